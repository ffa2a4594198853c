"""The sweep runner (the driver): `python -m drift_sweeps.run` is `cli.main`.

cli.py          argparse and every flag check that needs no Ray
plan.py         the validated plan (no Ray, no lock); `settle`: what the folder holds, under its lock
checks.py       the target files a sweep's trials will read, checked before Ray
folder.py       `SweepFolder`: the only owner of a sweep folder's layout, spec, finished rows, temporaries
lock.py         one driver per sweep folder (lock_stores.py: local/NFS, S3, best effort elsewhere)
identity.py     one trial identity (grid point + repeat) for both runners
driver.py       the lock around a run, the runner chosen, signals and the interrupted exit
runner.py       the runner interface (two implementations)
tune_runner.py  the trials on Ray Tune;  serial.py: the trials in this process (--serial)
signals.py      SIGINT / SIGTERM;  report.py: the final table and the command that continues a sweep
watchdog.py     kills an embedded Ray whose driver died;  provenance.py: commit and package versions
"""
