"""`genclip card` and `genclip push`: the Hub model card of a checkpoint, and its upload with code and card."""

from __future__ import annotations

import argparse

from .options import output_path


def register(subparsers: argparse._SubParsersAction) -> None:
    card = subparsers.add_parser("card", help="write the Hub model card (README.md) of a checkpoint")
    card.add_argument("--model", required=True, help="saved checkpoint folder")
    card.add_argument("--out", required=True, type=output_path, help="card to write, e.g. README.md")
    card.add_argument("--repo-id", help="Hub repo id shown in the usage snippets")
    add_card_options(card)
    card.set_defaults(handler=run_card)

    push = subparsers.add_parser("push", help="publish a checkpoint with its code and model card to the Hub")
    push.add_argument("--model", required=True, help="saved checkpoint folder (e.g. a `genclip train` output)")
    push.add_argument("--repo", required=True, help="Hub model repo id, e.g. user/genclip-mvtec")
    push.add_argument("--private", action="store_true", help="create the repo as private")
    push.add_argument("--folder", type=output_path, help="build the upload folder here (new or empty) and keep it")
    push.add_argument("--no-upload", action="store_true", help="only build --folder, do not upload")
    push.add_argument("--commit-message", default="Upload GenCLIP checkpoint")
    add_card_options(push)
    push.set_defaults(handler=run_push)


def add_card_options(parser: argparse.ArgumentParser) -> None:
    """Options of the Hub model card, shared by `genclip card`, `genclip push` and `genclip train --push-to-hub`."""
    parser.add_argument(
        "--metrics",
        nargs="+",
        default=[],
        metavar="[DATASET=]JSON",
        help="evaluation results: `genclip evaluate` folders or their results.json / dataset_row.json; per_class.json "
        "as DATASET=PATH",
    )
    parser.add_argument("--model-name", help="card title and model-index name (default: the repo or folder name)")
    parser.add_argument("--training-log", help="the trainer's training_log.json (default: the one in --model)")
    parser.add_argument("--license", default="apache-2.0", help="Hub licence id of the weights (default: apache-2.0)")
    parser.add_argument("--datasets", nargs="+", help="Hub dataset ids of the training data (default: its benchmark)")


def card_options(args: argparse.Namespace) -> dict:
    """The model-card options of [`add_card_options`]."""
    return {
        "model_name": args.model_name,
        "training_log": args.training_log,
        "license": args.license,
        "datasets": args.datasets,
    }


def run_card(args: argparse.Namespace) -> int:
    from ..model_card import write_model_card

    path = write_model_card(args.model, args.out, metrics=args.metrics, repo_id=args.repo_id, **card_options(args))
    print(f"wrote {path}")
    return 0


def run_push(args: argparse.Namespace) -> int:
    from ..publishing import build_upload_folder, push_to_hub, upload_file_names

    if args.no_upload:
        if not args.folder:
            raise ValueError("--no-upload needs --folder (where to build the upload folder).")
        folder = build_upload_folder(args.model, args.folder, args.metrics, repo_id=args.repo, **card_options(args))
        print(f"built {folder}: {', '.join(upload_file_names(folder))}")
        return 0
    commit = push_to_hub(
        args.model,
        args.repo,
        args.metrics,
        private=args.private,
        commit_message=args.commit_message,
        folder=args.folder,
        **card_options(args),
    )
    print(f"pushed to https://huggingface.co/{args.repo} ({commit})")
    return 0
