"""usable_cores counts the cores this process may run on, not the machine's."""
import os
import subprocess
import sys

import pytest

from sg2_container.io.cores import usable_cores


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="affinity masks are Linux's")
def test_a_narrowed_affinity_mask_is_what_counts():
    first = min(os.sched_getaffinity(0))
    code = (f"import os; os.sched_setaffinity(0, {{{first}}}); "
            "from sg2_container.io.cores import usable_cores; "
            "from sg2_container.data.options import default_workers; "
            "print(usable_cores(), default_workers())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1", "1"]
    assert usable_cores() == len(os.sched_getaffinity(0))
