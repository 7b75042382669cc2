"""Train chosen members of LoGAN run directories one after another, in one process.

    python bench/logan_member.py RUN:I [RUN:I ...] [--settings-from RUN] [--threads 1]

``train`` (and ``bench/logan.py``) trains the members of one run directory in turn, one process
per target. To spread an ensemble's members over cores across targets, start one of these per
core with a list of ``RUN:I`` items: member ``I`` of run directory ``RUN`` is trained by the
same ``train_member`` as ``train_task`` uses (checkpoints in ``RUN/member_0I/``, saved as
``RUN/member_0I.pt``), with the seed and parameters of member ``I`` in
``config.json`` of ``--settings-from`` (default: ``RUN`` itself). A member already trained for
its epochs is skipped; an interrupted one continues from its checkpoint. Afterwards
``bench/logan.py --sio2-evaluate-only`` evaluates the run directories.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("items", nargs="+", metavar="RUN:I")
    p.add_argument("--settings-from", dest="settings_from",
                   help="run directory whose config.json gives the member settings")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)

    import torch
    from ase.io import read

    from ase_mlgen.generators.logan.training import train_member, trained_epochs

    torch.set_num_threads(args.threads)
    for item in args.items:
        run_text, sep, index = item.rpartition(":")
        if not sep or not index.isdigit():
            raise SystemExit(f"{item!r}: expected RUN:I, e.g. runs/sio2/mp-546546:3")
        run, i = Path(run_text), int(index)
        config = json.loads((run / "config.json").read_text())
        source = Path(args.settings_from) if args.settings_from else run
        members = json.loads((source / "config.json").read_text())["members"]
        if i >= len(members):
            raise SystemExit(f"{source / 'config.json'} has {len(members)} members, not {i + 1}")
        t0 = time.perf_counter()
        model, trained = train_member(run, i, members[i], read(config["data"], ":"),
                                      config["composition"], config["cell"], resume=True)
        print(f"{item}: trained to epoch {trained_epochs(model)} in "
              f"{time.perf_counter() - t0:.0f} s" if trained else f"{item}: already trained",
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
