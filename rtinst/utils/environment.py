"""What a result was measured on: versions, hardware, threads and date (benchmarks, reports)."""
import datetime
import os
import platform
import resource
import sys

import detectron2
import torch


def _cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        return names[0] if names else platform.processor()
    except OSError:
        return platform.processor()


def environment_info(device):
    """Versions, hardware, threads and date of this run (peak RSS: the whole process so far)."""
    device = torch.device(device)
    on_cuda = device.type == "cuda"
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "detectron2": detectron2.__version__,
        "platform": platform.platform(),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if on_cuda else _cpu_name(),
        "cuda": torch.version.cuda if on_cuda else None,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_average": list(os.getloadavg()),  # 1, 5, 15 min, this run included: above `threads`
        # means other work competed for the CPUs (with threads ~ CPUs, CPU timings degrade badly)
        "process_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
