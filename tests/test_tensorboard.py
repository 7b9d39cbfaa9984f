"""gcj's TensorBoard event files: TFRecord framing with masked CRC-32C, and Event / Summary bytes
that protobuf itself parses with TensorBoard's field numbers."""
import struct

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from gcj import tensorboard


def _event_class():
    """tensorboard's Event / Summary / Value messages, only the fields gcj writes."""
    F = descriptor_pb2.FieldDescriptorProto
    fdp = descriptor_pb2.FileDescriptorProto(name="gcj_test_event.proto", package="tb")
    messages = {"Value": [("tag", 1, F.TYPE_STRING, ""), ("simple_value", 2, F.TYPE_FLOAT, "")],
                "Summary": [("value", 1, F.TYPE_MESSAGE, ".tb.Value")],
                "Event": [("wall_time", 1, F.TYPE_DOUBLE, ""), ("step", 2, F.TYPE_INT64, ""),
                          ("file_version", 3, F.TYPE_STRING, ""), ("summary", 5, F.TYPE_MESSAGE, ".tb.Summary")]}
    for name, fields in messages.items():
        m = fdp.message_type.add(name=name)
        for fname, number, ftype, type_name in fields:
            label = F.LABEL_REPEATED if fname == "value" else F.LABEL_OPTIONAL
            m.field.add(name=fname, number=number, type=ftype, label=label)
            if type_name:
                m.field[-1].type_name = type_name
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("tb.Event"))


def _records(path):
    with open(path, "rb") as f:
        data = f.read()
    out, i = [], 0
    while i < len(data):
        (n,) = struct.unpack("<Q", data[i:i + 8])
        assert struct.unpack("<I", data[i + 8:i + 12])[0] == tensorboard._masked_crc(data[i:i + 8])
        body = data[i + 12:i + 12 + n]
        assert struct.unpack("<I", data[i + 12 + n:i + 16 + n])[0] == tensorboard._masked_crc(body)
        out.append(body)
        i += 16 + n
    return out


def test_crc32c_known_answer():
    assert tensorboard.crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value
    assert tensorboard.crc32c(b"") == 0


def test_event_file_is_what_tensorboard_reads(tmp_path):
    with tensorboard.SummaryWriter(str(tmp_path)) as w:
        w.scalars(10, {"train/loss": 0.5, "val/accuracy": 0.875, "note": "skipped"})
        w.scalars(2 ** 40, {"train/loss": -3.25})
    assert "tfevents" in w.path
    Event = _event_class()
    events = [Event.FromString(r) for r in _records(w.path)]
    assert events[0].file_version == "brain.Event:2" and not events[0].HasField("summary")
    assert [e.step for e in events[1:]] == [10, 2 ** 40]
    assert {v.tag: v.simple_value for v in events[1].summary.value} == {"train/loss": 0.5, "val/accuracy": 0.875}
    assert events[2].summary.value[0].simple_value == pytest.approx(-3.25)
    assert all(e.wall_time > 1.7e9 for e in events)
