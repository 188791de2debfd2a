"""A cache entry asked for by two jobs at once is built once; the other waits and reuses it."""
import threading
import time

from ftkit.core.files import exclusive
from ftkit.train import assistant


def test_the_lock_makes_the_second_holder_wait(tmp_path):
    order = []

    def hold(name, delay):
        time.sleep(delay)
        with exclusive(tmp_path / "entry"):
            order.append(f"{name} in")
            time.sleep(0.3)
            order.append(f"{name} out")

    threads = [threading.Thread(target=hold, args=("a", 0)),
               threading.Thread(target=hold, args=("b", 0.1))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert order == ["a in", "a out", "b in", "b out"]


def test_publish_builds_once_when_two_ask_together(tmp_path):
    builds = []

    def build(folder):
        builds.append(folder)
        time.sleep(0.3)
        (folder / "made").write_text("x")

    final = tmp_path / "cache" / "key"
    done = []
    threads = [threading.Thread(target=lambda: done.append(assistant.publish(build, final)))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(builds) == 1 and done == [final, final]
    assert (final / "made").read_text() == "x"
    assert sorted(p.name for p in final.parent.iterdir()) == [".key.lock", "key"]
