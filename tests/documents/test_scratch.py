"""The renderer's documents folder: locked by its owner, removed by the next gateway once dead."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from ocrflux.documents.scratch import PREFIX, ScratchFolder, remove_dead_folders

ROOT = Path(__file__).resolve().parents[2]


def test_a_dead_owners_folder_is_removed_a_live_ones_kept(tmp_path: Path) -> None:
    code = (
        "import sys, time\n"
        "from ocrflux.documents.scratch import ScratchFolder\n"
        "folder = ScratchFolder(sys.argv[1])\n"
        "open(folder.path + '/doc', 'wb').write(b'x')\n"
        "print(folder.path, flush=True)\n"
        "time.sleep(60)\n"
    )
    owner = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    assert owner.stdout is not None
    dead = Path(owner.stdout.readline().strip())
    assert dead.name.startswith(f"{PREFIX}{owner.pid}-")
    live = ScratchFolder(str(tmp_path))
    try:
        assert remove_dead_folders(str(tmp_path)) == 0  # both owners run
        owner.kill()
        owner.wait()
        assert remove_dead_folders(str(tmp_path)) == 1
        assert not dead.exists() and os.path.isdir(live.path)
    finally:
        live.remove()
    assert list(tmp_path.iterdir()) == []


def test_a_folder_being_set_up_is_left_alone_for_a_while(tmp_path: Path) -> None:
    young = tmp_path / f".{PREFIX}new-young"
    old = tmp_path / f".{PREFIX}new-old"
    young.mkdir()
    old.mkdir()
    an_hour_ago = time.time() - 3600
    os.utime(old, (an_hour_ago, an_hour_ago))
    unrelated = tmp_path / "ocrflux-documents-legacy"  # not a name this code gives
    unrelated.mkdir()
    assert remove_dead_folders(str(tmp_path)) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([young.name, unrelated.name])
