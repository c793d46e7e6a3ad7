from collections import Counter

import pytest
from fake_trees import capture_warnings, touch, write_wav

from m3bert.adapters import rwc
from m3bert.adapters.base import DatasetLayoutError


def make_rwc(root):
    names = [
        f"{number}{code}{style}{dynamics}.WAV"
        for number, code in (("011", "PF"), ("012", "PF"), ("151", "VN"), ("291", "OB"), ("293", "EH"))
        for style in ("NO", "ST")
        for dynamics in "FMP"
    ]
    for i, name in enumerate(names):
        touch(root / f"RWC_I_{1 + i // 10:02d}" / name[:3] / name)
    write_wav(root / "notes" / "091CGAFM_11.wav")  # one of the files cut into single notes
    return names


def test_instrument_labels_and_split(tmp_path):
    make_rwc(tmp_path)
    tracks = rwc.tracks(tmp_path, seed=0)
    assert len(tracks) == 31
    assert tracks[0].track_id == "RWC_I_01/011/011PFNOF" and tracks[0].labels == {"instrument": "piano"}
    labels = Counter(t.labels["instrument"] for t in tracks)
    assert labels == {"piano": 12, "violin": 6, "oboe": 6, "english horn": 6, "classical guitar": 1}
    by_instrument = Counter((t.labels["instrument"], t.split) for t in tracks)
    assert by_instrument[("piano", "train")] == 10 and by_instrument[("piano", "test")] == 1
    assert by_instrument[("classical guitar", "train")] == 1
    assert {t.split for t in rwc.tracks(tmp_path, split=None)} == {None}


def test_unknown_codes(tmp_path, caplog):
    warnings_of = capture_warnings(caplog)
    make_rwc(tmp_path)
    touch(tmp_path / "351SKNOF.wav")
    tracks = rwc.tracks(tmp_path, split=None)
    assert [t.labels["instrument"] for t in tracks if t.track_id == "351SKNOF"] == ["SK"]
    assert any("SK" in m for m in warnings_of())
    with pytest.raises(DatasetLayoutError, match="351SKNOF.wav: instrument code 'SK'"):
        rwc.tracks(tmp_path, unknown="error")


def test_errors(tmp_path):
    with pytest.raises(DatasetLayoutError, match="not found"):
        rwc.tracks(tmp_path / "rwc")
    with pytest.raises(DatasetLayoutError, match="no audio files"):
        rwc.tracks(tmp_path)
    touch(tmp_path / "piano_C4.wav")
    with pytest.raises(DatasetLayoutError, match="piano_C4.wav: not an RWC-MDB-I file name"):
        rwc.tracks(tmp_path)
    with pytest.raises(ValueError, match="unknown must be"):
        rwc.tracks(tmp_path, unknown="skip")
