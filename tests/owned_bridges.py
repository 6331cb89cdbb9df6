#!/usr/bin/env python3
"""Print the host bridges that a ketchd data root's networks made.

The rule of engine::networks::host_bridge, for the scripts that clean up
after a daemon they ran (bench/lib.sh, tests/soak/crash.sh): a bridge is
ketch's when its record says ketch made it (records from before that field:
only kt-<its own id>) and the device is a bridge still marked as the
network's own (alias "ketch network <id>"). An adopted bridge is the host's.
"""
import glob
import json
import os
import sys

for path in glob.glob(os.path.join(sys.argv[1], "networks", "*.json")):
    try:
        n = json.load(open(path))
    except (OSError, ValueError):
        continue
    b, i = n.get("bridge", ""), n.get("id", "")
    own = "kt-" + i[:12]
    dev = "/sys/class/net/" + b
    try:
        alias = open(dev + "/ifalias").read().strip()
    except OSError:
        alias = None
    made = n.get("bridge_made", b == own)
    marked = alias == "ketch network " + i or (alias == "" and b == own)
    if b and made and os.path.isdir(dev + "/bridge") and marked:
        print(b)
