import pickle

import numpy as np
import pytest
import torch
from metrics_references import random_maps_and_masks

from genclip_hf.metrics import AnomalyMetricAccumulator, aupro, image_ap, image_auroc, pixel_auroc


def _dataset(seed=0, n_images=24, size=12):
    rng = np.random.default_rng(seed)
    maps, masks = random_maps_and_masks(rng, n_images=n_images, size=size)
    labels = masks.any(axis=(1, 2)).astype(np.int64)
    scores = maps.max(axis=(1, 2)) + 0.3 * rng.random(n_images)
    names = [("bottle", "cable", "screw")[(index // 4) % 3] for index in range(n_images)]
    return maps.astype(np.float32), masks, scores, labels, names


def _assert_same_results(actual, expected):
    assert actual["per_class"].keys() == expected["per_class"].keys()
    for name, values in expected["per_class"].items():
        assert actual["per_class"][name] == pytest.approx(values, abs=1e-12, nan_ok=True)
    assert actual["mean"] == pytest.approx(expected["mean"], abs=1e-12, nan_ok=True)


@pytest.mark.parametrize("aupro_mode", ["exact", "anomalyclip"])
@pytest.mark.filterwarnings("error")
def test_batches_equal_one_shot_and_direct_calls(aupro_mode):
    maps, masks, scores, labels, names = _dataset()
    one_shot = AnomalyMetricAccumulator(aupro_mode=aupro_mode)
    one_shot.update(maps, masks, scores, labels, names)
    batched = AnomalyMetricAccumulator(aupro_mode=aupro_mode)
    for start in range(0, len(maps), 5):
        batch = slice(start, start + 5)
        batched.update(
            torch.from_numpy(maps[batch]), torch.from_numpy(masks[batch]), scores[batch], labels[batch], names[batch]
        )
    expected = one_shot.compute()
    _assert_same_results(batched.compute(), expected)
    _assert_same_results(batched.compute(), expected)
    assert len(batched) == len(maps)

    for name in set(names):
        selected = np.array(names) == name
        values = expected["per_class"][name]
        assert values["pixel_auroc"] == pixel_auroc(maps[selected], masks[selected])
        assert values["aupro"] == aupro(maps[selected], masks[selected], mode=aupro_mode)
        assert values["image_auroc"] == image_auroc(scores[selected], labels[selected])
        assert values["image_ap"] == image_ap(scores[selected], labels[selected])
        assert values["n_images"] == selected.sum()
        assert values["n_anomalous"] == labels[selected].sum()
    per_class = [expected["per_class"][name]["aupro"] for name in expected["per_class"]]
    assert expected["mean"]["aupro"] == pytest.approx(np.mean(per_class))


def _shards_with_padding(n_images, n_processes, batch_size):
    """Indices each process sees when the last batches are padded by repeating the first samples."""
    total = -(-n_images // (n_processes * batch_size)) * n_processes * batch_size
    order = [index % n_images for index in range(total)]
    return [
        [
            order[start + rank * batch_size : start + (rank + 1) * batch_size]
            for start in range(0, total, n_processes * batch_size)
        ]
        for rank in range(n_processes)
    ]


def test_merge_with_sample_ids_drops_duplicates():
    maps, masks, scores, labels, names = _dataset(seed=1, n_images=23)
    expected = AnomalyMetricAccumulator()
    expected.update(maps, masks, scores, labels, names)
    per_process = []
    for batches in _shards_with_padding(len(maps), n_processes=2, batch_size=4):
        accumulator = AnomalyMetricAccumulator()
        for batch in batches:
            accumulator.update(
                maps[batch], masks[batch], scores[batch], labels[batch], [names[i] for i in batch], batch
            )
        per_process.append(accumulator)
    assert sum(len(accumulator) for accumulator in per_process) > len(maps)
    merged = AnomalyMetricAccumulator()
    for accumulator in per_process:
        merged.merge(accumulator)
    assert len(merged) == len(maps)
    _assert_same_results(merged.compute(), expected.compute())


def test_gather_merges_processes_without_duplicates(monkeypatch):
    maps, masks, scores, labels, names = _dataset(seed=2, n_images=10)
    expected = AnomalyMetricAccumulator()
    expected.update(maps, masks, scores, labels, names)
    shards = [[0, 1, 2, 3, 4, 5], [6, 7, 8, 9, 0, 1]]
    processes = []
    for shard in shards:
        accumulator = AnomalyMetricAccumulator()
        accumulator.update(maps[shard], masks[shard], scores[shard], labels[shard], [names[i] for i in shard], shard)
        processes.append(accumulator)

    def fake_gather_object(objects):
        return [pickle.loads(pickle.dumps(process)) for process in processes]

    monkeypatch.setattr("accelerate.utils.gather_object", fake_gather_object)
    two_processes = type("FakeAccelerator", (), {"num_processes": 2})()
    local = processes[1]
    local.gather(two_processes)
    assert len(local) == len(maps)
    _assert_same_results(local.compute(), expected.compute())

    without_ids = AnomalyMetricAccumulator()
    without_ids.update(maps, masks, scores, labels, names)
    with pytest.raises(ValueError, match="gather_for_metrics"):
        without_ids.gather(two_processes)
    single = type("FakeAccelerator", (), {"num_processes": 1})()
    without_ids.gather(single)
    assert len(without_ids) == len(maps)


def test_merge_without_sample_ids_concatenates():
    maps, masks, scores, labels, names = _dataset(seed=3, n_images=12)
    expected = AnomalyMetricAccumulator()
    expected.update(maps, masks, scores, labels, names)
    first, second = AnomalyMetricAccumulator(), AnomalyMetricAccumulator()
    first.update(maps[:7], masks[:7], scores[:7], labels[:7], names[:7])
    second.update(maps[7:], masks[7:], scores[7:], labels[7:], names[7:])
    first.merge(second)
    _assert_same_results(first.compute(), expected.compute())
    with_ids = AnomalyMetricAccumulator()
    with_ids.update(maps[:2], masks[:2], scores[:2], labels[:2], names[:2], sample_ids=["a", "b"])
    with pytest.raises(ValueError, match="cannot merge"):
        first.merge(with_ids)


def test_storage_dtypes():
    maps, masks, scores, labels, names = _dataset(seed=4, n_images=6)
    accumulator = AnomalyMetricAccumulator()
    accumulator.update(maps.astype(np.float64), masks.astype(np.uint8), scores, labels, names)
    records = next(iter(accumulator._records.values()))
    assert records.anomaly_maps[0].dtype == np.float32
    assert records.masks[0].dtype == bool


def _two_process_evaluation():
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=True)
    maps, masks, scores, labels, names = _dataset(seed=5, n_images=11)
    dataset = torch.utils.data.TensorDataset(
        torch.from_numpy(maps), torch.from_numpy(masks), torch.from_numpy(scores), torch.arange(len(maps))
    )
    loader = accelerator.prepare(torch.utils.data.DataLoader(dataset, batch_size=2))
    gathered_per_batch, local = AnomalyMetricAccumulator(), AnomalyMetricAccumulator()
    seen_locally = 0
    for batch_maps, batch_masks, batch_scores, ids in loader:
        batch_labels = labels[ids.numpy()]
        local.update(batch_maps, batch_masks, batch_scores, batch_labels, [names[i] for i in ids], ids.tolist())
        seen_locally += len(ids)
        all_maps, all_masks, all_scores, all_ids = accelerator.gather_for_metrics(
            (batch_maps, batch_masks, batch_scores, ids)
        )
        gathered_per_batch.update(all_maps, all_masks, all_scores, labels[all_ids.numpy()], [names[i] for i in all_ids])
    assert seen_locally == 6  # 11 samples on 2 processes: one sample is repeated to pad the last batch
    local.gather(accelerator)
    expected = AnomalyMetricAccumulator()
    expected.update(maps, masks, scores, labels, names)
    assert len(gathered_per_batch) == len(local) == len(maps)
    _assert_same_results(gathered_per_batch.compute(), expected.compute())
    _assert_same_results(local.compute(), expected.compute())


def test_two_accelerate_processes_count_every_sample_once():
    from accelerate import debug_launcher

    debug_launcher(_two_process_evaluation, num_processes=2)
