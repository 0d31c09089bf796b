"""The store directory as found, not as made: links, FIFOs, devices and oversized files in the
place of konbini-ld's own files, a path below a regular file, a directory this user cannot
write, an archive that belongs to another store. Each is refused with one ``Error:`` line (or,
for readers, read as it is); nothing outside the store is ever read or written through it."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from helpers import NEWER, SEED, VIDEOS

from konbini_ld.apps.cli import main


def cli(store: Path, *args: str, archive: Path | None = None) -> Any:
    extra = ["--archive", str(archive)] if archive is not None else []
    return CliRunner().invoke(main, ["--store", str(store), *extra, *args], catch_exceptions=False)


def one_error(r: Any, code: int = 1) -> str:
    assert r.exit_code == code, (r.exit_code, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, r.stderr
    return errors[0]


@pytest.fixture
def store(tmp_path: Path) -> Path:
    path = tmp_path / "store"
    assert cli(path, "load", str(SEED)).exit_code == 0
    return path


def _segment(store: Path) -> str:
    return next(p.name for p in (store / "archive").iterdir() if p.name.endswith(".jsonl.gz"))


#: The store's own files, as a function of the store (a segment's name is found on disk).
OWN_FILES = {
    "writer.lock": lambda s: "writer.lock",
    "views.lock": lambda s: "views.lock",
    "views.turn": lambda s: "views.turn",
    "state.json": lambda s: "state.json",
    "archive HEAD": lambda s: "archive/HEAD",
    "archive .lock": lambda s: "archive/.lock",
    "archive segment": lambda s: f"archive/{_segment(s)}",
    "REBUILD": lambda s: "REBUILD",
    "search.sqlite": lambda s: "search.sqlite",
    "store-id": lambda s: "store-id",
    "archive OWNER": lambda s: "archive/OWNER",
}


def _victim(tmp_path: Path, content: bytes) -> tuple[Path, bytes, float]:
    victim = tmp_path / "someone-elses-file"
    victim.write_bytes(content)
    os.utime(victim, (1_000_000_000, 1_000_000_000))
    return victim, content, victim.stat().st_mtime


@pytest.mark.parametrize("name", OWN_FILES, ids=list(OWN_FILES))
def test_a_store_file_that_is_a_link_is_refused_and_its_target_never_touched(store: Path, tmp_path: Path,
                                                                               name: str) -> None:
    relative = OWN_FILES[name](store)
    own = store / relative
    content = own.read_bytes() if own.exists() else b'{"applied_seq": 1}'
    victim, before, mtime = _victim(tmp_path, content)
    own.unlink(missing_ok=True)
    own.symlink_to(victim)
    r = cli(store, "load", str(NEWER))
    line = one_error(r)
    assert "symbolic link" in line and relative.split("/")[-1] in line, line
    assert victim.read_bytes() == before and victim.stat().st_mtime == mtime


def test_links_and_fifos_in_place_of_the_writers_memo_are_removed_never_followed(store: Path, tmp_path: Path) -> None:
    """``written.memo`` is a cache of what the last writer wrote: a link there (or at its
    temporary name), or a FIFO, is not read through, blocks nothing, and is replaced by a file."""
    from konbini_ld.store.store import MEMO_FILE

    victim, before, mtime = _victim(tmp_path, b"precious")
    for kind in ("link", "fifo"):
        memo, part = store / MEMO_FILE, store / (MEMO_FILE + ".part")
        memo.unlink(missing_ok=True)
        part.unlink(missing_ok=True)
        if kind == "link":
            memo.symlink_to(victim)
            part.symlink_to(victim)
        else:
            os.mkfifo(memo)
        r = cli(store, "load", str(NEWER))
        assert r.exit_code == 0, r.stderr
        assert victim.read_bytes() == before and victim.stat().st_mtime == mtime
        assert memo.is_file() and not memo.is_symlink() and not part.exists()


def test_a_dangling_link_is_not_followed_to_create_its_target(store: Path, tmp_path: Path) -> None:
    target = tmp_path / "created-through-the-link"
    (store / "writer.lock").unlink()
    (store / "writer.lock").symlink_to(target)
    one_error(cli(store, "load", str(NEWER)))
    assert not target.exists()


def test_a_leftover_temporary_link_is_replaced_not_followed(store: Path, tmp_path: Path) -> None:
    victim, before, mtime = _victim(tmp_path, b"precious")
    (store / "state.json.tmp").symlink_to(victim)
    (store / "archive" / "HEAD.tmp").symlink_to(victim)
    r = cli(store, "load", str(NEWER))
    assert r.exit_code == 0, r.stderr
    assert victim.read_bytes() == before and victim.stat().st_mtime == mtime


def test_readers_answer_beside_a_linked_text_index(store: Path, tmp_path: Path) -> None:
    victim, before, _ = _victim(tmp_path, (store / "search.sqlite").read_bytes())
    (store / "search.sqlite").unlink()
    (store / "search.sqlite").symlink_to(victim)
    r = cli(store, "query", "search", "-p", "text=original", "-f", "csv")
    assert r.exit_code == 0 and "original sound" in r.stdout, r.stderr
    assert victim.read_bytes() == before


@pytest.mark.parametrize("name", ["search.sqlite", "search.sqlite-wal"])
def test_readers_answer_beside_a_fifo_in_place_of_the_text_index(store: Path, name: str) -> None:
    """SQLite would open a FIFO and wait for a writer to it for good (no signal ends the wait):
    readers answer with the plain queries, without opening it."""
    (store / name).unlink(missing_ok=True)
    os.mkfifo(store / name)
    for args in (("query", "top-audios", "-f", "csv"), ("query", "search", "-p", "text=original", "-f", "csv"),
                 ("stats",)):
        out = subprocess.run([sys.executable, "-m", "konbini_ld", "--store", str(store), *args],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0 and "Traceback" not in out.stderr, (args, out.stderr)
    assert "original sound" in out.stdout or "audios" in out.stdout


@pytest.mark.parametrize("name", ["state.json", "archive/HEAD", "writer.lock", "views.lock", "search.sqlite"])
def test_a_fifo_in_place_of_a_store_file_is_refused_without_blocking(store: Path, name: str) -> None:
    own = store / name
    own.unlink()
    os.mkfifo(own)
    out = subprocess.run([sys.executable, "-m", "konbini_ld", "--store", str(store), "load", str(NEWER)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "not a regular file" in out.stderr and "Traceback" not in out.stderr, out.stderr


def test_an_oversized_state_file_is_refused_without_reading_it_all(store: Path) -> None:
    with open(store / "state.json", "wb") as fh:
        fh.truncate(1 << 30)  # a sparse gigabyte: read whole, it would be one
    line = one_error(cli(store, "load", str(NEWER)))
    assert "state.json is larger than 64 KiB" in line


def test_a_linked_rebuild_directory_is_removed_not_followed(store: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("mine")
    (store / "oxigraph.rebuild").symlink_to(elsewhere)
    assert cli(store, "load", str(NEWER)).exit_code == 0
    assert not (store / "oxigraph.rebuild").exists() and (elsewhere / "keep.txt").read_text() == "mine"


def test_a_linked_store_directory_and_archive_directory_are_fine(tmp_path: Path) -> None:
    real, archive_real = tmp_path / "real", tmp_path / "archive-real"
    real.mkdir()
    archive_real.mkdir()
    (tmp_path / "link").symlink_to(real)
    assert cli(tmp_path / "link", "load", str(SEED)).exit_code == 0
    (real / "archive").rename(archive_real / "archive")
    (real / "archive").symlink_to(archive_real / "archive")
    r = cli(tmp_path / "link", "load", str(NEWER))
    assert r.exit_code == 0, r.stderr
    assert cli(tmp_path / "link", "stats").exit_code == 0


# -- where the store is ------------------------------------------------------------------------


@pytest.mark.parametrize("command", [("stats",), ("query", "top-audios"), ("load", str(SEED)), ("rebuild",),
                                     ("fetch", "--dry-run", "7611615657754381599"), ("export",)])
def test_a_store_below_a_regular_file_is_one_line(tmp_path: Path, command: tuple[str, ...]) -> None:
    (tmp_path / "afile").write_text("x")
    line = one_error(cli(tmp_path / "afile" / "store", *command))
    assert "afile" in line


def test_a_store_path_that_is_a_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    assert "not a directory" in one_error(cli(tmp_path / "afile", "load", str(SEED)))


@pytest.mark.parametrize("command", [("stats",), ("query", "top-audios"), ("export", "-f", "nt"), ("validate",),
                                     ("query", "search", "-p", "text=x")])
def test_a_mistyped_store_is_one_line_and_nothing_is_made_there(tmp_path: Path, command: tuple[str, ...]) -> None:
    """A reader pointed at a directory that holds no store (missing, or someone's folder) says so:
    it does not make an empty store there and answer from it."""
    folder = tmp_path / "documents"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    # what a store holds, holding nothing: an empty archive/, an empty oxigraph/, a stray state.json
    hollow = {"empty-archive": "archive/", "empty-graph": "oxigraph/", "stray-state": "state.json",
              "stray-rebuild": "REBUILD"}
    for name, what in hollow.items():
        (tmp_path / name).mkdir()
        if what.endswith("/"):
            (tmp_path / name / what).mkdir()
        else:
            (tmp_path / name / what).write_text('{"applied_seq": 0}')
    made = {p: sorted(q.name for q in p.rglob("*")) for p in tmp_path.iterdir()}
    for store in (tmp_path / "stroe", folder, *(tmp_path / name for name in hollow)):
        line = one_error(cli(store, *command))
        assert line == f"Error: there is no konbini-ld store at {store} (load something first)", line
    assert not (tmp_path / "stroe").exists()
    assert {p: sorted(q.name for q in p.rglob("*")) for p in tmp_path.iterdir()} == made  # (nothing made anywhere)


def test_a_reader_applies_what_a_first_run_archived_before_it_made_its_graph(store: Path) -> None:
    """Its archive holds answers and its graph was never made: the reader writes them first."""
    shutil.rmtree(store / "oxigraph")
    for name in ("state.json", "search.sqlite"):
        (store / name).unlink()
    r = cli(store, "query", "top-audios", "-f", "csv")
    assert r.exit_code == 0 and "original sound" in r.stdout and "applied 1 archived response" in r.stderr, r.stderr


@pytest.mark.parametrize("value", ["", " ", "file:///tmp/x", "ftp://host/store", "http://", "http://[::1",
                                   "http://127.0.0.1:99999/query"])
def test_store_values_that_name_no_store_are_usage_errors(tmp_path: Path, value: str, monkeypatch: Any) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    r = CliRunner().invoke(main, ["--store", value, "stats"], catch_exceptions=False)
    one_error(r, 2)
    assert list(tmp_path.iterdir()) == []  # nothing was made anywhere


@pytest.mark.parametrize("name", ["KONBINI_LD_STORE", "KONBINI_LD_ARCHIVE"])
def test_a_store_variable_set_but_empty_is_not_the_default_store(tmp_path: Path, monkeypatch: Any,
                                                                  name: str) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv(name, "")
    line = one_error(CliRunner().invoke(main, ["stats"], catch_exceptions=False), 2)
    assert line == f"Error: {name} is set but empty: unset it for the default, or give a directory"
    assert list(tmp_path.iterdir()) == []


# -- a store this user cannot write --------------------------------------------------------------


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory another user can reach (pytest's own are private to this user)."""
    path = Path(tempfile.mkdtemp(prefix="konbini-ro-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    for root, dirs, _ in os.walk(path):
        for d in dirs:
            os.chmod(os.path.join(root, d), 0o755)
    os.chmod(path, 0o755)
    shutil.rmtree(path)


def _read_only(path: Path) -> None:
    for root, dirs, files in os.walk(path):
        for name in files:
            os.chmod(os.path.join(root, name), 0o444)
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o555)
    os.chmod(path, 0o555)


def _as_reader(*args: str) -> subprocess.CompletedProcess[str]:
    """The command line as a user who may read the store but not write it (root writes anything:
    as root, the command runs as ``nobody``)."""
    prefix: list[str] = []
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv to become another user")
        prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    env = {**os.environ, "HOME": "/tmp"}
    return subprocess.run([*prefix, sys.executable, "-m", "konbini_ld", *args], capture_output=True, text=True,
                          timeout=120, env=env, cwd="/tmp")


@pytest.mark.skipif(not hasattr(os, "geteuid"), reason="POSIX users")
def test_a_read_only_store_is_read_and_writers_get_one_line(shared_dir: Path) -> None:
    store = shared_dir / "store"
    assert cli(store, "load", str(SEED), str(VIDEOS)).exit_code == 0
    for name in ("views.lock", "views.turn"):  # (as a store last written before they were kept: made by no one)
        (store / name).unlink()
    _read_only(store)
    probe = _as_reader("--version")
    if probe.returncode != 0:
        pytest.skip(f"this interpreter cannot run as another user: {probe.stderr[-200:]}")
    for args in (("stats",), ("query", "top-audios", "-f", "csv"), ("query", "search", "-p", "text=original"),
                 ("export", "-f", "nt"), ("validate",)):
        out = _as_reader("--store", str(store), *args)
        assert out.returncode == 0 and "Traceback" not in out.stderr, (args, out.stderr)
    dry = _as_reader("--store", str(store), "fetch", "--dry-run", "7611615657754381599")
    assert dry.returncode == 0 and "read-only" not in dry.stdout and "would make" in dry.stderr, dry.stderr
    for args in (("load", str(NEWER)), ("rebuild",)):
        out = _as_reader("--store", str(store), *args)
        errors = [line for line in out.stderr.splitlines() if line.startswith("Error:")]
        assert out.returncode == 1 and "Traceback" not in out.stderr, (args, out.stderr)
        assert errors == [f"Error: cannot write the store at {store}: Permission denied (it is read-only for this "
                          "user; query, export, stats, validate and serve can still read it)"], out.stderr
    assert stat.S_IMODE(store.stat().st_mode) == 0o555
    missing = _as_reader("--store", str(store / "nothing-here"), "stats")
    assert missing.returncode == 1 and missing.stderr.splitlines() == [
        f"Error: there is no konbini-ld store at {store / 'nothing-here'} (load something first)"], missing.stderr


@pytest.mark.skipif(not hasattr(os, "geteuid"), reason="POSIX users")
def test_an_archive_this_user_cannot_write_is_read_by_dry_runs_and_refused_in_one_line(shared_dir: Path) -> None:
    """The store is this user's, its ``--archive`` another's (readable): readers and dry runs read
    both; a writer says so in one line and buys nothing."""
    store, archive = shared_dir / "store", shared_dir / "archive"
    assert cli(store, "load", str(SEED), archive=archive).exit_code == 0
    probe = _as_reader("--version")
    if probe.returncode != 0:
        pytest.skip(f"this interpreter cannot run as another user: {probe.stderr[-200:]}")
    if os.geteuid() == 0:  # (the reader runs as nobody: the store is made its own, the archive stays root's)
        for root, dirs, files in os.walk(store):
            for name in [*dirs, *files]:
                os.chown(os.path.join(root, name), 65534, 65534)
        os.chown(store, 65534, 65534)
    else:
        _read_only(archive)
    options = ("--store", str(store), "--archive", str(archive))
    assert _as_reader(*options, "stats").returncode == 0
    dry = _as_reader(*options, "fetch", "--dry-run", "7611615657754381599")
    assert dry.returncode == 0 and "would make" in dry.stderr, dry.stderr
    out = _as_reader(*options, "load", str(NEWER))
    errors = [line for line in out.stderr.splitlines() if line.startswith("Error:")]
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert len(errors) == 1 and "cannot write the archive" in errors[0] and "Permission denied" in errors[0], errors


# -- whose archive -------------------------------------------------------------------------------


def _archive_bytes(archive: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in archive.iterdir() if p.name != ".lock"}


@pytest.mark.parametrize("command", [("load", str(NEWER)), ("rebuild",), ("stats",), ("query", "top-audios")])
def test_another_store_s_archive_is_refused(store: Path, tmp_path: Path, command: tuple[str, ...]) -> None:
    """``--archive`` naming another store: its responses would be applied (and advised to be
    rebuilt) as this store's own, and this store's appended to the other's."""
    other = tmp_path / "other"
    assert cli(other, "load", str(VIDEOS)).exit_code == 0  # a store of its own first
    before = _archive_bytes(store / "archive")
    line = one_error(cli(other, *command, archive=store))
    assert "belongs to another store" in line and str(store) in line and "OWNER" in line, line
    assert _archive_bytes(store / "archive") == before
    assert cli(store, "stats").exit_code == 0  # the owner still opens it


def test_a_new_store_given_another_store_s_archive_takes_nothing_from_it(store: Path, tmp_path: Path) -> None:
    line = one_error(cli(tmp_path / "new", "load", str(VIDEOS), archive=store))
    assert "belongs to another store" in line
    assert not (tmp_path / "new" / "oxigraph").exists()


def test_a_shared_archive_directory_is_claimed_by_its_first_store(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    assert cli(tmp_path / "a", "load", str(SEED), archive=shared).exit_code == 0
    assert cli(tmp_path / "a", "load", str(NEWER), archive=shared).exit_code == 0  # its own: fine again
    one_error(cli(tmp_path / "b", "load", str(VIDEOS), archive=shared))
    one_error(cli(tmp_path / "b", "stats", archive=shared))
    # the way out the message gives: the other store is gone, this one takes the archive over
    (shared / "archive" / "OWNER").unlink()
    r = cli(tmp_path / "b", "rebuild", archive=shared)
    assert r.exit_code == 0 and "rebuilt from 2 responses" in r.stderr, r.stderr
    one_error(cli(tmp_path / "a", "stats", archive=shared))


def test_an_archive_written_before_owners_were_recorded_is_claimed(store: Path, tmp_path: Path) -> None:
    (store / "archive" / "OWNER").unlink()
    (store / "store-id").unlink()
    assert cli(store, "load", str(NEWER)).exit_code == 0
    assert (store / "archive" / "OWNER").exists() and (store / "store-id").exists()
    one_error(cli(tmp_path / "b", "stats", archive=store))


def test_a_remote_store_refuses_an_archive_of_another_store_before_any_request(store: Path) -> None:
    from konbini_ld import open_store
    from konbini_ld.errors import StoreError

    for read_only in (False, True):
        with pytest.raises(StoreError, match="belongs to another store"):
            open_store("http://127.0.0.1:9/query", archive=store, read_only=read_only)


def test_a_graph_it_may_not_write_is_said_so_not_called_damaged(store: Path, tmp_path: Path) -> None:
    """Files owned by someone else (a store copied as another user) are a permission problem,
    not damage: the advice to rebuild would not help."""
    setpriv = shutil.which("setpriv")
    if setpriv is None or os.geteuid() != 0:
        pytest.skip("needs setpriv and root, to drop the right to write others' files")
    (store / "oxigraph").chmod(0o555)
    try:
        dropped = "-dac_override,-dac_read_search,-fowner"
        r = subprocess.run([setpriv, f"--inh-caps={dropped}", f"--bounding-set={dropped}", sys.executable, "-m",
                            "konbini_ld", "--store", str(store), "compact"], capture_output=True, text=True, timeout=120)
    finally:
        (store / "oxigraph").chmod(0o755)
    assert r.returncode == 1 and "permission denied" in r.stderr, r.stderr
    assert "damaged" not in r.stderr and "rebuild" not in r.stderr and "Traceback" not in r.stderr
