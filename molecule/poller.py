"""Polls a URL inside the container while a test changes the site, and says
whether any request failed. Standard library only; bounded in time.

    python3 poller.py URL --out FILE --stop FILE [--seconds 300] [--interval 0.05]

Runs until the stop file appears (or --seconds pass), then writes
{"requests": N, "failed": N, "first": [the first failures]} to --out.
"""

import argparse
import json
import os
import time
import urllib.request


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--out", required=True)
    parser.add_argument("--stop", required=True)
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--interval", type=float, default=0.05)
    args = parser.parse_args()
    requests, failures = 0, []
    deadline = time.monotonic() + args.seconds
    while time.monotonic() < deadline and not os.path.exists(args.stop):
        requests += 1
        try:
            with urllib.request.urlopen(args.url, timeout=5) as response:
                if response.status != 200:
                    failures.append(f"{time.time():.3f} status {response.status}")
        except Exception as exc:  # any failed request is what we count
            failures.append(f"{time.time():.3f} {exc!r}")
        time.sleep(args.interval)
    with open(args.out, "w") as out:
        json.dump({"requests": requests, "failed": len(failures), "first": failures[:20]}, out)


if __name__ == "__main__":
    main()
