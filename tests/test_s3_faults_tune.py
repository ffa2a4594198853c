"""S3 faults under Tune (issue 23): the S3 endpoint (moto, on 127.0.0.1) stops answering mid-sweep; the Tune
sweep stops with exit 74 and one line naming the folder, without a traceback or a hang; once the endpoint is
back, `--resume` completes the sweep with every trial exactly once."""

from __future__ import annotations

import gc
import logging
import os
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from test_storage_faults import _run  # the CLI in a subprocess, timed from its last progress line

ROOT = Path(__file__).resolve().parents[1]
BUCKET = "drift-tune-faults"  # a bucket of its own: moto's state is shared by every server in the process
GRID = {"bandwidth": [0.5, 1.0, 2.0, 4.0], "dt": [0.1, 0.2]}  # 8 tiny trials
N_TRIALS = 8

pytestmark = pytest.mark.slow


def _server(port: int):
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    return server


def test_s3_endpoint_lost_mid_tune_sweep_stops_with_74_and_resumes(make_space, ray_tmp, capsys):
    import boto3
    import pyarrow.fs as pafs
    import socket

    with socket.socket() as s:  # a free loopback port for the local S3 endpoint
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = _server(port)
    endpoint = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": endpoint,
           "AWS_EC2_METADATA_DISABLED": "true"}
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                      aws_secret_access_key="testing")
    s3.create_bucket(Bucket=BUCKET)
    space = make_space("lost_tune", axes=GRID, max_concurrent=2)
    args = [str(space), "--results", f"s3://{BUCKET}/sweeps", "--num-cpus", "2", "--temp-dir", ray_tmp,
            "--address", "local"]
    stopped: dict[str, float] = {}

    def stop() -> None:
        stopped["t"] = time.monotonic()
        server.stop()
        servers.pop()

    servers = [server]

    try:
        code, out, err, after_s = _run(*args, env=env, on_first_line=stop)
        figures = {"exit": code, "s_after_last_progress_line": round(after_s, 1),
                   "s_after_endpoint_stopped": round(time.monotonic() - stopped.get("t", time.monotonic()), 1)}
        errors = [ln for ln in (out + err).splitlines() if ln.startswith("error:")]
        with capsys.disabled():
            print(f"\nS3 lost under Tune: {figures}; {errors}")
        assert code == 74, out[-3000:] + err[-3000:]
        assert "Traceback" not in out + err and "Exception in thread" not in out + err, (out + err)[-4000:]
        assert len(errors) == 1 and f"s3://{BUCKET}/sweeps/lost_tune" in errors[0] and "--resume" in errors[0], errors
        # a stop, not a hang: 19 s alone, 31 s beside the rest of the suite on 2 cores (S3 retries, Ray's shutdown)
        assert after_s < 60, figures

        servers.append(_server(port))  # moto keeps its buckets in the process: the same bucket is back
        code, out, err, _ = _run(*args, "--resume", env=env)
        with capsys.disabled():
            print(f"resume: exit {code}; " + " ".join(ln for ln in out.splitlines() if "resuming" in ln))
        assert code == 0, out[-3000:] + err[-3000:]
        fs = pafs.S3FileSystem(access_key="testing", secret_key="testing", region="us-east-1",
                               endpoint_override=endpoint, scheme="http")
        ids = pq.read_table(f"{BUCKET}/sweeps/lost_tune/trials", filesystem=fs, columns=["trial_id"]).column("trial_id")
        assert len(ids) == N_TRIALS and len(set(ids.to_pylist())) == N_TRIALS, ids
    finally:
        if not servers:
            servers.append(_server(port))
        # moto's buckets live in this process, shared with every other moto server of the session: remove ours
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                s3.delete_objects(Bucket=BUCKET, Delete={"Objects": keys})
        s3.delete_bucket(Bucket=BUCKET)
        servers[0].stop()
        del s3, servers, server
        gc.collect()  # (another test looks for moto servers among the live objects)
