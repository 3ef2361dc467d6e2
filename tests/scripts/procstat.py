"""Reading a backend's memory from /proc, for the tests that measure it."""


def rss_kb(pid):
    """The resident set size of process `pid`, in kB (VmRSS)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")
