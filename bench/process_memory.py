"""This process's memory on Linux, for the benchmarks' fresh measuring processes."""
import os


def reset_peak_rss() -> int:
    """Reset this process's peak RSS (VmHWM; ru_maxrss would include the parent's) to the current
    RSS, and return that RSS in bytes."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")
