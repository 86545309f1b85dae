"""One process per study folder: a live holder is named and refused, a dead holder's lock is taken over."""

import json
import os
import subprocess
import sys

import pytest

from keras_medgan.evaluation import locking


def test_a_second_process_is_refused_with_the_folder_and_pid_and_a_killed_holder_is_taken_over(tmp_path,
                                                                                             hold_study_lock):
    folder = tmp_path / "study"
    proc = hold_study_lock(folder)
    try:
        with pytest.raises(locking.StudyLocked) as info:
            with locking.hold(str(folder)):
                pass
        text = str(info.value)
        assert text.startswith(f"the study folder {folder} is already being run by PID {proc.pid} (running since ")
        assert f"lock file {folder / 'study.lock'}" in text and f"kill {proc.pid}" in text
        assert "pass another --run-dir" in text
    finally:
        proc.kill()
        proc.wait()
    # SIGKILL leaves the lock file naming the dead process; the kernel released its flock
    assert json.load(open(folder / "study.lock"))["pid"] == proc.pid
    messages = []
    with locking.hold(str(folder), log=messages.append) as path:
        assert json.load(open(path))["pid"] == os.getpid()
        with locking.hold(str(folder), log=messages.append):  # re-entrant in the holding process
            pass
        assert json.load(open(path))["pid"] == os.getpid()
    assert len(messages) == 1
    assert messages[0].startswith(f"study {folder}: taking over a stale lock left by PID {proc.pid} (running since ")
    assert "which is no longer running; cells it finished are kept" in messages[0]
    assert open(folder / "study.lock").read() == ""  # released: an empty file is a free lock, no message next time
    with locking.hold(str(folder), log=messages.append):
        pass
    assert len(messages) == 1


def test_a_lock_file_naming_a_dead_pid_is_stale(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    assert not locking.pid_alive(dead.pid) and locking.pid_alive(os.getpid())
    folder, lock = tmp_path / "s", tmp_path / "s" / "study.lock"
    os.makedirs(folder)
    lock.write_text(json.dumps({"pid": dead.pid}))
    messages = []
    with locking.hold(str(folder), log=messages.append):
        pass
    assert messages == [f"study {folder}: taking over a stale lock left by PID {dead.pid}, which is no longer "
                        f"running; cells it finished are kept, the rest will be trained ({lock})"]
    lock.write_text(json.dumps({"pid": 1, "host": "elsewhere"}))  # not ours to check: said so
    with locking.hold(str(folder), log=messages.append):
        pass
    assert messages[1].startswith(f"study {folder}: taking over a stale lock left by PID 1 on host elsewhere, which "
                                  "no longer holds it;")
