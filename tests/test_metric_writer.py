"""A workdir's records: metrics.jsonl, TensorBoard event files (tensorboardX) that TensorBoard's
own protobufs parse (scalars at their steps, the config as hparams, PNG plots as images), and the
report's JSON."""
import errno
import glob
import io
import json
import struct

import numpy as np
import pytest
from PIL import Image
from tensorboardX.event_file_writer import EventsWriter
from tensorboardX.proto.event_pb2 import Event

from conftest import smoke_config
from gcj import metric_writer
from gcj.evaluate import dumps


def _events(directory):
    """Every Event in the event files of ``directory`` (TFRecord framing: length, its CRC, the
    bytes, their CRC)."""
    out = []
    for path in sorted(glob.glob(f"{directory}/events.out.tfevents.*")):
        data, i = open(path, "rb").read(), 0
        while i < len(data):
            (n,) = struct.unpack("<Q", data[i:i + 8])
            out.append(Event.FromString(data[i + 12:i + 12 + n]))
            i += 16 + n
    return out


def test_records_go_to_json_lines_and_tensorboard_scalars(tmp_path):
    with metric_writer.MetricWriter(str(tmp_path), smoke_config()) as w:
        w.write(dict(step=10, epoch=1, **{"train/loss": 0.5, "val/accuracy": 0.875, "note": "text", "ok": True}))
        w.write({"step": 2 ** 40, "train/loss": -3.25})
    lines = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    assert lines[0]["note"] == "text" and lines[1] == {"step": 2 ** 40, "train/loss": -3.25}
    scalars = [(e.step, v.tag, v.simple_value) for e in _events(tmp_path) for v in e.summary.value
               if v.HasField("simple_value")]
    assert scalars == [(10, "train/loss", 0.5), (10, "val/accuracy", 0.875), (2 ** 40, "train/loss", -3.25)]
    plugins = {v.metadata.plugin_data.plugin_name for e in _events(tmp_path) for v in e.summary.value}
    assert "hparams" in plugins  # the config, for TensorBoard's HParams tab
    hp = [v.metadata.plugin_data.content for e in _events(tmp_path) for v in e.summary.value
          if v.metadata.plugin_data.plugin_name == "hparams"]
    assert any(b"model.sdim.rep_dim" in c for c in hp) and any(b"optim.lr" in c for c in hp)


def test_a_resumed_run_appends_on_a_line_of_its_own_after_a_line_cut_short(tmp_path):
    """A process killed mid-write leaves metrics.jsonl ending inside a line: the next writer's
    records start on a line of their own, readable; a file that ends a line gets no blank one."""
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "epoch": 1}\n{"step": 2, "ep')
    with metric_writer.MetricWriter(str(tmp_path)) as w:
        w.write({"step": 2, "epoch": 1, "val/accuracy": 0.5})
    with metric_writer.MetricWriter(str(tmp_path)) as w:
        w.write({"step": 3, "epoch": 2})
    lines = (tmp_path / "metrics.jsonl").read_text().split("\n")
    assert lines[1] == '{"step": 2, "ep' and lines[4] == ""
    assert [json.loads(line) for line in lines[2:4]] == [{"step": 2, "epoch": 1, "val/accuracy": 0.5},
                                                          {"step": 3, "epoch": 2}]
    assert metric_writer.records(str(tmp_path)) == [{"step": 1, "epoch": 1}, {"step": 2, "epoch": 1, "val/accuracy": 0.5},
                                                    {"step": 3, "epoch": 2}]  # (the cut line left out)
    assert metric_writer.records(str(tmp_path / "none")) == []


def test_a_full_disk_is_an_error_of_the_write_itself(tmp_path, monkeypatch):
    """A TensorBoard write the filesystem refuses is a MetricWriteError raised by ``write`` (written
    from a thread instead, the error would kill that thread and the writes after it would block on
    its queue: a training run that never ends)."""
    w = metric_writer.MetricWriter(str(tmp_path))
    w.write({"step": 1, "train/loss": 1.0})

    def full(self):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(EventsWriter, "flush", full)
    with pytest.raises(metric_writer.MetricWriteError, match=r"TensorBoard file in .*: No space left on device"):
        w.write({"step": 2, "train/loss": 0.5})
    monkeypatch.undo()
    w.close()
    assert [json.loads(line)["step"] for line in open(tmp_path / "metrics.jsonl")] == [1, 2]


def test_plots_become_tensorboard_images(tmp_path):
    pixels = (np.arange(6 * 4 * 3) % 256).astype(np.uint8).reshape(6, 4, 3)
    Image.fromarray(pixels).save(tmp_path / "plot.png")
    metric_writer.write_images(str(tmp_path), {"ood/plot": str(tmp_path / "plot.png")})
    images = [v for e in _events(tmp_path) for v in e.summary.value if v.HasField("image")]
    assert [v.tag for v in images] == ["ood/plot"]
    assert (images[0].image.height, images[0].image.width) == (6, 4)
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(images[0].image.encoded_image_string))),
                                  pixels)



def test_a_report_keeps_single_numbers_exact_and_lists_at_float32():
    """Per-image lists are float32 on the device: written in float32's shortest form (half the
    bytes), read back as the same float32; single metrics, integers, NaN and ±inf as they are."""
    values = np.random.default_rng(0).normal(size=50).astype(np.float32) * 100
    report = dict(acc=0.9293000000000001, per_image=values.tolist(), counts=[3, 0, 12],
                  edge=[float("nan"), float("inf"), -float("inf"), 1e40, -0.0], nested=dict(curve=[[0.1, 0.25]]))
    text = dumps(report)
    back = json.loads(text)
    assert back["acc"] == report["acc"]
    np.testing.assert_array_equal(np.float32(back["per_image"]), values)
    assert back["counts"] == [3, 0, 12] and back["nested"]["curve"] == [[0.1, 0.25]]
    assert np.isnan(back["edge"][0]) and back["edge"][1:] == [float("inf"), -float("inf"), 1e40, -0.0]
    assert len(text) < 0.7 * len(json.dumps(report, indent=2))
