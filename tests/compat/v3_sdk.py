#!/usr/bin/env python3
"""Compatibility test: drives crsd's Tencent Cloud API 3.0 dialect (redis 2018-04-12) with the
public tencentcloud-sdk-python (RedisClient, typed models; TC3-HMAC-SHA256 and the old
HmacSHA256 signature; MonitorClient's GetMonitorData, monitor 2018-07-24) and with tccli 3.1.189.1, over HTTPS with the test CA, then checks the
Redis data with a raw socket; an instance with 3 replicas is bought and changed to 2 live. The
instance of the backup walk is made through v2 CreateRedis with the v2 SDK
(qcloudapi-sdk-python, in the same venv): one instance serves both dialects.

Environment: CRSD_HOST (host:port of crsd's HTTPS listener), CRSD_SECRET_ID, CRSD_SECRET_KEY,
CRSD_CA (the test CA, PEM), SSL_CERT_FILE (the same CA, for the v2 SDK and urllib), CRSD_TCCLI
(the tccli executable), CRSD_SCRATCH (an empty directory this script may use), and optionally
CRSD_COMPAT_RESULT (a file that receives {"passed": N, "failed": M}). Prints one line per
check; exits 1 if any check failed.

TLS trust: the SDK takes the CA as HttpProfile(certification=PATH). tccli has no CA option and
the SDK passes requests an explicit `verify=certifi.where()`, so REQUESTS_CA_BUNDLE and
SSL_CERT_FILE are ignored (checked below). tccli is therefore run with a private copy of the
certifi package (its bundle plus the test CA) first on PYTHONPATH: what a user does by
appending a CA to certifi's bundle, without touching the venv.
"""

import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
import traceback
import urllib.request

from QcloudApi.qcloudapi import QcloudApi
import QcloudApi.modules.redis as redis_v2_module

from tencentcloud.common import credential
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.redis.v20180412 import models, redis_client
from tencentcloud.monitor.v20180724 import models as monitor_models, monitor_client
from redis.cluster import RedisCluster

HOST = os.environ["CRSD_HOST"]
SECRET_ID = os.environ["CRSD_SECRET_ID"]
SECRET_KEY = os.environ["CRSD_SECRET_KEY"]
CA = os.environ["CRSD_CA"]
TCCLI = os.environ["CRSD_TCCLI"]
SCRATCH = os.environ["CRSD_SCRATCH"]
RESULT_FILE = os.environ.get("CRSD_COMPAT_RESULT")

PASSWORD = "V3sdk!pw9x"
REGION = "ap-guangzhou"
POLL_LIMIT_SECS = 60
TCCLI_TIMEOUT_SECS = 120

redis_v2_module.Redis.requestHost = HOST

passed = 0
failed = 0


def check(name, ok, detail=""):
    global passed, failed
    if ok:
        passed += 1
        print("ok   v3: %s" % name, flush=True)
    else:
        failed += 1
        print("FAIL v3: %s%s" % (name, (": " + str(detail)[:600]) if detail else ""), flush=True)
    return ok


def note(msg):
    print("     v3: %s" % msg, flush=True)


def brief(x):
    if hasattr(x, "to_json_string"):
        return x.to_json_string()[:400]
    return json.dumps(x, ensure_ascii=False, default=str)[:400]


def poll(what, fn, done):
    deadline = time.time() + POLL_LIMIT_SECS
    last = None
    while time.time() < deadline:
        last = fn()
        if done(last):
            return last
        time.sleep(0.25)
    note("%s: gave up after %ss, last answer %s" % (what, POLL_LIMIT_SECS, brief(last or {})))
    return None


# ---- raw Redis (RESP inline commands), as v2_sdk.py --------------------------------------

def redis_session(host, port, commands):
    replies = []
    with socket.create_connection((host, port), timeout=5) as s:
        f = s.makefile("rb")
        for cmd in commands:
            s.sendall(cmd.encode() + b"\r\n")
            replies.append(read_reply(f))
    return replies


def read_reply(f):
    line = f.readline()
    if not line:
        raise AssertionError("redis closed the connection")
    if line.startswith(b"$"):
        n = int(line[1:].strip())
        if n < 0:
            return line.rstrip(b"\r\n")
        body = f.read(n + 2)
        return line + body.rstrip(b"\r\n")
    return line.rstrip(b"\r\n")


# ---- clients --------------------------------------------------------------------------------

def sdk(sign_method="TC3-HMAC-SHA256", req_method="POST", secret_key=SECRET_KEY,
        secret_id=SECRET_ID):
    hp = HttpProfile(endpoint=HOST, reqMethod=req_method, certification=CA, reqTimeout=30)
    cp = ClientProfile(signMethod=sign_method, httpProfile=hp)
    return redis_client.RedisClient(credential.Credential(secret_id, secret_key), REGION, cp)


def request(cls, **fields):
    r = cls()
    for k, v in fields.items():
        setattr(r, k, v)
    return r


def next_second():
    """crsd accepts a TC3 signature for a change only if it was never used, and the SDK signs
    only the body and the second: a change sent with the same body as an earlier request in
    the same second (DescribeInstances then Destroy*Instance, both {"InstanceId": ..}) signs
    alike and is refused as a replay. A script waits for the next second, as here."""
    now = time.time()
    time.sleep(int(now) + 1 - now + 0.01)


def sdk_error(fn):
    """Runs fn; returns the TencentCloudSDKException it raised, or None."""
    try:
        fn()
    except TencentCloudSDKException as e:
        return e
    return None


def cloud_monitor_walk(redis_id):
    """Cloud Monitor's GetMonitorData (service monitor, 2018-07-24) with the public
    tencentcloud-sdk-python-monitor: the instance's figures from crsd's own history."""
    hp = HttpProfile(endpoint=HOST, certification=CA, reqTimeout=30)
    c = monitor_client.MonitorClient(credential.Credential(SECRET_ID, SECRET_KEY), REGION,
                                     ClientProfile(httpProfile=hp))

    def ask(metric, period=5):
        dim = request(monitor_models.Dimension, Name="instanceid", Value=redis_id)
        now = time.time()
        iso = lambda t: time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(t))  # noqa: E731
        return c.GetMonitorData(request(
            monitor_models.GetMonitorDataRequest, Namespace="QCE/REDIS_MEM", MetricName=metric,
            Instances=[request(monitor_models.Instance, Dimensions=[dim])], Period=period,
            StartTime=iso(now - 600), EndTime=iso(now)))

    r = poll("GetMonitorData MemUsed", lambda: ask("MemUsed"),
             lambda r: r.DataPoints and r.DataPoints[0].Values)
    ok = r is not None and r.Period == 5 and r.MetricName == "MemUsed" \
        and r.DataPoints[0].Dimensions[0].Value == redis_id \
        and len(r.DataPoints[0].Timestamps) == len(r.DataPoints[0].Values) \
        and all(v > 0 for v in r.DataPoints[0].Values) and bool(r.StartTime) and bool(r.RequestId)
    check("GetMonitorData (monitor 2018-07-24, typed) MemUsed of %s: points in MB" % redis_id, ok,
          brief(r or {}))
    r = ask("Connections", period=60)
    check("GetMonitorData Connections, Period 60: minute buckets",
          r.Period == 60 and all(int(t) % 60 == 0 for t in r.DataPoints[0].Timestamps), brief(r))
    e = sdk_error(lambda: ask("NoSuchMetric"))
    check("GetMonitorData of an unknown metric raises InvalidParameterValue",
          e is not None and e.get_code() == "InvalidParameterValue", str(e))


def create_instance_v2():
    """v2 CreateRedis with the v2 SDK, waited until delivered; the instance id."""
    api = QcloudApi("redis", {"Region": "gz", "secretId": SECRET_ID, "secretKey": SECRET_KEY,
                              "method": "POST"})
    r = json.loads(api.call("CreateRedis", {"zoneId": 100002, "typeId": 2, "memSize": 1024,
                                             "goodsNum": 1, "period": 1, "password": PASSWORD}))
    deal = (r.get("data") or {}).get("dealId")
    if not check("v2 CreateRedis (to get an instance) returns a dealId", r.get("code") == 0 and deal,
                 brief(r)):
        return None

    def status(a):
        d = a.get("dealDetails") or []
        return d[0].get("status") if d else None

    r = poll("DescribeRedisDealDetail",
             lambda: json.loads(api.call("DescribeRedisDealDetail", {"dealIds": [deal]})),
             lambda a: status(a) not in (None, 1, 2, 3, 12))
    ok = r is not None and status(r) == 4
    if not check("v2 deal delivered", ok, brief(r or {})):
        return None
    ids = r["dealDetails"][0]["goodsDetail"]["redisIds"]
    return ids[0] if len(ids) == 1 else None


def wait_task_sdk(c, task, what):
    r = poll("DescribeTaskInfo",
             lambda: c.DescribeTaskInfo(request(models.DescribeTaskInfoRequest, TaskId=task)),
             lambda a: a.Status not in ("preparing", "running"))
    return check("DescribeTaskInfo(%s task %s) reaches \"succeed\"" % (what, task),
                 r is not None and r.Status == "succeed", brief(r or {}))


# ---- the SDK walk ---------------------------------------------------------------------------

def sdk_walk(redis_id):
    c = sdk()

    r = c.DescribeInstances(request(models.DescribeInstancesRequest, Limit=20, Offset=0))
    found = [i for i in (r.InstanceSet or []) if i.InstanceId == redis_id]
    ok = len(found) == 1 and found[0].Status == 2 and found[0].Size == 1024.0 \
        and bool(found[0].WanIp) and bool(found[0].Port) and r.TotalCount >= 1 \
        and bool(r.RequestId)
    if not check("DescribeInstances (TC3 POST, typed) lists %s: Status 2, Size 1024, WanIp, Port"
                 % redis_id, ok, brief(r)):
        return None
    host, port = found[0].WanIp, int(found[0].Port)

    r = c.DescribeInstances(request(models.DescribeInstancesRequest, InstanceId=redis_id,
                                    Limit=10, Offset=0))
    check("DescribeInstances filtered by InstanceId",
          r.TotalCount == 1 and [i.InstanceId for i in r.InstanceSet] == [redis_id], brief(r))

    r = sdk(req_method="GET").DescribeInstances(
        request(models.DescribeInstancesRequest, InstanceId=redis_id, Limit=10, Offset=0))
    check("DescribeInstances (TC3 GET)",
          r.TotalCount == 1 and [i.InstanceId for i in r.InstanceSet] == [redis_id], brief(r))

    for method, req_method in (("HmacSHA256", "POST"), ("HmacSHA256", "GET"),
                               ("HmacSHA1", "POST")):
        r = sdk(sign_method=method, req_method=req_method).DescribeInstances(
            request(models.DescribeInstancesRequest, InstanceId=redis_id, Limit=10, Offset=0))
        check("DescribeInstances (old signature %s, %s)" % (method, req_method),
              r.TotalCount == 1 and [i.InstanceId for i in r.InstanceSet] == [redis_id],
              brief(r))

    rep = redis_session(host, port, ["AUTH " + PASSWORD, "SET v3:1 one", "SET v3:2 two",
                                     "DEL v3:3"])
    check("redis: keys written before the backup", rep == [b"+OK", b"+OK", b"+OK", b":0"],
          repr(rep))

    remark = "v3 sdk 备份 & x=1"  # UTF-8 (sent as \uXXXX by the SDK) and specials
    r = c.ManualBackupInstance(request(models.ManualBackupInstanceRequest, InstanceId=redis_id,
                                       Remark=remark, StorageDays=7))
    if not check("ManualBackupInstance returns a TaskId", isinstance(r.TaskId, int), brief(r)):
        return None
    if not wait_task_sdk(c, r.TaskId, "ManualBackupInstance"):
        return None

    r = c.DescribeInstanceBackups(request(models.DescribeInstanceBackupsRequest,
                                          InstanceId=redis_id, Limit=20, Offset=0, Status=[2]))
    mine = [b for b in (r.BackupSet or []) if b.Remark == remark]
    ok = len(mine) == 1 and bool(mine[0].BackupId) and mine[0].Status == 2 \
        and mine[0].Locked == 0 and mine[0].BackupType == "0" and mine[0].InstanceId == redis_id
    if not check("DescribeInstanceBackups shows it (BackupSet: Status 2, Locked 0, BackupType \"0\")",
                 ok, brief(r)):
        return None
    backup_id = mine[0].BackupId

    r = c.DescribeBackupUrl(request(models.DescribeBackupUrlRequest, InstanceId=redis_id,
                                    BackupId=backup_id))
    infos = r.BackupInfos or []
    url = infos[0].DownloadUrl if infos else ""
    ok = bool(url) and url.startswith("https://") and r.DownloadUrl == [url] \
        and bool(infos[0].InnerDownloadUrl)
    if check("DescribeBackupUrl: BackupInfos[0].DownloadUrl (https)", ok, brief(r)):
        try:
            ctx = ssl.create_default_context(cafile=CA)
            with urllib.request.urlopen(url, timeout=30, context=ctx) as resp:
                status, body = resp.status, resp.read()
            check("download over HTTPS: 200, REDIS00..., FileSize bytes",
                  status == 200 and body.startswith(b"REDIS00")
                  and len(body) == infos[0].FileSize,
                  "%s %r len %d FileSize %s" % (status, body[:16], len(body), infos[0].FileSize))
        except Exception as e:  # noqa: BLE001 - reported as a failed check
            check("download over HTTPS: 200, REDIS00..., FileSize bytes", False, repr(e))

    rep = redis_session(host, port, ["AUTH " + PASSWORD, "SET v3:1 changed", "DEL v3:2",
                                     "SET v3:3 new"])
    check("redis: keys changed after the backup", rep == [b"+OK", b"+OK", b":1", b"+OK"],
          repr(rep))

    e = sdk_error(lambda: c.RestoreInstance(request(
        models.RestoreInstanceRequest, InstanceId=redis_id, BackupId=backup_id,
        Password="Wrong123pw")))
    check("RestoreInstance with a wrong password raises InvalidParameterValue.PasswordError",
          e is not None and e.get_code() == "InvalidParameterValue.PasswordError"
          and bool(e.get_request_id()), repr(e))

    r = c.RestoreInstance(request(models.RestoreInstanceRequest, InstanceId=redis_id,
                                  BackupId=backup_id, Password=PASSWORD))
    if not check("RestoreInstance returns a TaskId", isinstance(r.TaskId, int), brief(r)):
        return None
    if not wait_task_sdk(c, r.TaskId, "RestoreInstance"):
        return None
    rep = redis_session(host, port, ["AUTH " + PASSWORD, "GET v3:1", "GET v3:2", "GET v3:3"])
    check("after RestoreInstance the keys hold the backed-up values",
          rep == [b"+OK", b"$3\r\none", b"$3\r\ntwo", b"$-1"], repr(rep))

    monitor_walk(c, redis_id, host, port)

    # Refusals through the SDK.
    e = sdk_error(lambda: c.ManualBackupInstance(request(models.ManualBackupInstanceRequest,
                                                         InstanceId="crs-nosuch00")))
    check("an unknown instance raises ResourceNotFound.InstanceNotExists",
          e is not None and e.get_code() == "ResourceNotFound.InstanceNotExists", repr(e))
    e = sdk_error(lambda: c.DescribeBackupUrl(request(models.DescribeBackupUrlRequest,
                                                      InstanceId=redis_id, BackupId="nosuch")))
    check("an unknown backup raises InvalidParameterValue.BackupNotExists",
          e is not None and e.get_code() == "InvalidParameterValue.BackupNotExists", repr(e))
    e = sdk_error(lambda: sdk(secret_key=SECRET_KEY + "x").DescribeInstances(
        models.DescribeInstancesRequest()))
    check("a wrong SecretKey raises AuthFailure.SignatureFailure",
          e is not None and e.get_code() == "AuthFailure.SignatureFailure", repr(e))
    e = sdk_error(lambda: sdk(sign_method="HmacSHA256", secret_key=SECRET_KEY + "x")
                  .DescribeInstances(models.DescribeInstancesRequest()))
    check("a wrong SecretKey (old signature) raises AuthFailure.SignatureFailure",
          e is not None and e.get_code() == "AuthFailure.SignatureFailure", repr(e))
    e = sdk_error(lambda: sdk(secret_id="AKIDnoSuchKey000000000000000000000000")
                  .DescribeInstances(models.DescribeInstancesRequest()))
    check("an unknown SecretId raises AuthFailure.SecretIdNotFound",
          e is not None and e.get_code() == "AuthFailure.SecretIdNotFound", repr(e))
    e = sdk_error(lambda: c.AllocateWanAddress(request(
        models.AllocateWanAddressRequest, InstanceId="crs-00000000")))
    check("AllocateWanAddress (not carried out) raises UnsupportedOperation naming it",
          e is not None and e.get_code() == "UnsupportedOperation"
          and "AllocateWanAddress" in (e.get_message() or ""), repr(e))
    return host, port


def monitor_walk(c, redis_id, host, port):
    """The monitoring actions through the SDK's typed models: every field the model names is
    filled, and a planted 50 KB key is the biggest."""
    rep = redis_session(host, port, ["AUTH " + PASSWORD, "SET v3:big " + "x" * 50000,
                                     "WAIT 1 5000"])
    check("redis: a 50 KB key planted", rep[:2] == [b"+OK", b"+OK"], repr(rep))
    today = time.strftime("%Y%m%d", time.gmtime())  # crsd's time zone here: UTC

    r = c.DescribeInstanceMonitorTopNCmd(request(
        models.DescribeInstanceMonitorTopNCmdRequest, InstanceId=redis_id, SpanType=1))
    counts = {d.Cmd: d.Count for d in (r.Data or [])}
    # The restore restarted the nodes: their counters began again (the planted key's SET).
    check("DescribeInstanceMonitorTopNCmd: SourceCommand Cmd/Count, set counted",
          counts.get("set", 0) >= 1 and all(isinstance(n, int) for n in counts.values()),
          brief(r))
    r = c.DescribeInstanceMonitorTopNCmdTook(request(
        models.DescribeInstanceMonitorTopNCmdTookRequest, InstanceId=redis_id, SpanType=4))
    check("DescribeInstanceMonitorTopNCmdTook: CommandTake Cmd/Took",
          any(d.Cmd == "set" and isinstance(d.Took, int) for d in (r.Data or [])), brief(r))
    r = c.DescribeInstanceMonitorTookDist(request(
        models.DescribeInstanceMonitorTookDistRequest, InstanceId=redis_id, Date=today,
        SpanType=2))
    rungs = r.Data or []
    check("DescribeInstanceMonitorTookDist: DelayDistribution over the ladder 1..200, -1",
          [d.Ladder for d in rungs] == [1, 5, 10, 50, 200, -1]
          and sum(d.Size for d in rungs) >= 3 and all(d.Updatetime > 0 for d in rungs),
          brief(r))

    with socket.create_connection((host, port), timeout=5) as s:
        s.sendall(("AUTH " + PASSWORD + "\r\n").encode())
        s.makefile("rb").readline()
        r = c.DescribeInstanceMonitorSIP(request(
            models.DescribeInstanceMonitorSIPRequest, InstanceId=redis_id))
    sources = r.Data or []
    check("DescribeInstanceMonitorSIP: SourceInfo Ip/Conn/Cmd, the open connection counted",
          len(sources) >= 1 and all(d.Ip and d.Conn >= 1 and isinstance(d.Cmd, int)
                                    for d in sources), brief(r))

    def big_keys():
        return c.DescribeInstanceMonitorBigKey(request(
            models.DescribeInstanceMonitorBigKeyRequest, InstanceId=redis_id, ReqType=2,
            Date=today))
    r = poll("DescribeInstanceMonitorBigKey", big_keys, lambda r: bool(r.Data))
    first = (r.Data or [None])[0] if r else None
    check("DescribeInstanceMonitorBigKey: BigKeyInfo, the planted key first",
          first is not None and first.Key == "v3:big" and first.Type == "string"
          and first.DB == 0 and first.Size >= 50000 and first.Updatetime > 0,
          brief(r or {}))
    r = c.DescribeInstanceMonitorBigKeySizeDist(request(
        models.DescribeInstanceMonitorBigKeySizeDistRequest, InstanceId=redis_id, Date=today))
    check("DescribeInstanceMonitorBigKeySizeDist: DelayDistribution, the key within 100 KB",
          [d.Size for d in (r.Data or [])][2:3] == [1], brief(r))
    r = c.DescribeInstanceMonitorBigKeyTypeDist(request(
        models.DescribeInstanceMonitorBigKeyTypeDistRequest, InstanceId=redis_id, Date=today))
    check("DescribeInstanceMonitorBigKeyTypeDist: BigKeyTypeInfo Type/Count/Size",
          any(d.Type == "string" and d.Count >= 1 and d.Size >= 50000 and d.Updatetime > 0
              for d in (r.Data or [])), brief(r))
    r = c.DescribeInstanceMonitorHotKey(request(
        models.DescribeInstanceMonitorHotKeyRequest, InstanceId=redis_id, SpanType=1))
    check("DescribeInstanceMonitorHotKey: empty Data under noeviction", r.Data == [], brief(r))
    e = sdk_error(lambda: c.DescribeInstanceMonitorTopNCmd(request(
        models.DescribeInstanceMonitorTopNCmdRequest, InstanceId=redis_id, SpanType=7)))
    check("DescribeInstanceMonitorTopNCmd with SpanType 7 raises InvalidParameterValue",
          e is not None and e.get_code() == "InvalidParameterValue", repr(e))


# ---- tccli ----------------------------------------------------------------------------------

def tccli_env(extra=None):
    env = dict(os.environ)
    for k in ("TENCENTCLOUD_SECRET_ID", "TENCENTCLOUD_SECRET_KEY", "TENCENTCLOUD_TOKEN",
              "TENCENTCLOUD_REGION", "TCCLI_PROFILE", "PYTHONPATH", "REQUESTS_CA_BUNDLE"):
        env.pop(k, None)
    env["HOME"] = os.path.join(SCRATCH, "home")
    env.update(extra or {})
    return env


def certifi_overlay():
    """A copy of the certifi package whose bundle also trusts the test CA; its parent dir."""
    import certifi
    src = os.path.dirname(certifi.__file__)
    root = os.path.join(SCRATCH, "pylib")
    dst = os.path.join(root, "certifi")
    if not os.path.isdir(dst):
        shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
        with open(os.path.join(dst, "cacert.pem"), "a") as f, open(CA) as ca:
            f.write("\n# crsd compat test CA\n" + ca.read())
    return root


def tccli(args, env_extra=None, trust=True):
    """Runs tccli; returns (exit code, stdout, stderr, parsed JSON or None)."""
    extra = dict(env_extra or {})
    if trust:
        extra["PYTHONPATH"] = certifi_overlay()
    p = subprocess.run([TCCLI] + args, env=tccli_env(extra), capture_output=True, text=True,
                       timeout=TCCLI_TIMEOUT_SECS)
    try:
        out = json.loads(p.stdout)
    except ValueError:
        out = None
    return p.returncode, p.stdout, p.stderr, out


def tccli_walk(redis_id, host, port):
    endpoint = "https://" + HOST
    os.makedirs(os.path.join(SCRATCH, "home"), exist_ok=True)

    # Credentials and region through `tccli configure set` (HOME is a scratch dir).
    rc, out, err, _ = tccli(["configure", "set", "secretId", SECRET_ID, "secretKey", SECRET_KEY,
                             "region", REGION, "output", "json"], trust=False)
    check("tccli configure set secretId/secretKey/region", rc == 0, out + err)

    # Without the CA in certifi's bundle, TLS fails whatever REQUESTS_CA_BUNDLE/SSL_CERT_FILE
    # say (the SDK passes verify=certifi.where()). Recorded, not counted.
    rc, out, err, _ = tccli(["redis", "DescribeInstances", "--endpoint", endpoint],
                            env_extra={"REQUESTS_CA_BUNDLE": CA, "SSL_CERT_FILE": CA},
                            trust=False)
    note("tccli with REQUESTS_CA_BUNDLE/SSL_CERT_FILE only: exit %d, %s"
         % (rc, "CERTIFICATE_VERIFY_FAILED" if "CERTIFICATE_VERIFY_FAILED" in out + err
            else (out + err).strip()[:160]))

    rc, out, err, r = tccli(["redis", "DescribeInstances", "--InstanceId", redis_id,
                             "--endpoint", endpoint])
    ok = rc == 0 and r is not None and r.get("TotalCount") == 1 \
        and [i.get("InstanceId") for i in r.get("InstanceSet") or []] == [redis_id] \
        and r["InstanceSet"][0].get("Status") == 2
    check("tccli redis DescribeInstances --InstanceId (--endpoint https://HOST:PORT)", ok,
          (out + err)[:400])

    rc, out, err, r = tccli(["redis", "DescribeInstances", "--Limit", "10", "--Offset", "0",
                             "--endpoint", HOST])
    ok = rc == 0 and r is not None and redis_id in [i.get("InstanceId")
                                                   for i in r.get("InstanceSet") or []]
    check("tccli redis DescribeInstances (--endpoint HOST:PORT)", ok, (out + err)[:400])

    # --region picks the region's zones: the instance (in ap-guangzhou) is not in ap-shanghai,
    # and a region crsd has no zone in is UnsupportedRegion.
    rc, out, err, r = tccli(["redis", "DescribeInstances", "--InstanceId", redis_id,
                             "--region", "ap-shanghai", "--endpoint", endpoint])
    ok = rc == 0 and r is not None and r.get("TotalCount") == 0
    check("tccli redis DescribeInstances --region ap-shanghai: not listed there", ok,
          (out + err)[:400])
    rc, out, err, r = tccli(["redis", "DescribeInstances", "--region", "ap-nowhere",
                             "--endpoint", endpoint])
    check("tccli --region ap-nowhere: UnsupportedRegion", "UnsupportedRegion" in out + err,
          (out + err)[:400])

    # Credentials from the environment, no profile files.
    rc, out, err, r = tccli(["redis", "DescribeInstances", "--InstanceId", redis_id,
                             "--endpoint", endpoint],
                            env_extra={"HOME": os.path.join(SCRATCH, "home-env"),
                                       "TENCENTCLOUD_SECRET_ID": SECRET_ID,
                                       "TENCENTCLOUD_SECRET_KEY": SECRET_KEY,
                                       "TENCENTCLOUD_REGION": REGION})
    ok = rc == 0 and r is not None and r.get("TotalCount") == 1
    check("tccli with TENCENTCLOUD_SECRET_ID/KEY/REGION from the environment", ok,
          (out + err)[:400])

    rep = redis_session(host, port, ["AUTH " + PASSWORD, "SET cli:1 alpha", "DEL cli:2"])
    check("redis: keys written before the tccli backup", rep == [b"+OK", b"+OK", b":0"],
          repr(rep))

    remark = "tccli backup"
    rc, out, err, r = tccli(["redis", "ManualBackupInstance", "--InstanceId", redis_id,
                             "--Remark", remark, "--endpoint", endpoint])
    task = (r or {}).get("TaskId")
    if not check("tccli redis ManualBackupInstance returns a TaskId",
                 rc == 0 and isinstance(task, int) and bool((r or {}).get("RequestId")),
                 (out + err)[:400]):
        return
    if not tccli_wait(task, endpoint, "ManualBackupInstance"):
        return

    rc, out, err, r = tccli(["redis", "DescribeInstanceBackups", "--InstanceId", redis_id,
                             "--Status", "[2]", "--Limit", "50", "--endpoint", endpoint])
    mine = [b for b in (r or {}).get("BackupSet") or [] if b.get("Remark") == remark]
    ok = rc == 0 and len(mine) == 1 and mine[0].get("Status") == 2 \
        and mine[0].get("Locked") == 0 and mine[0].get("BackupType") == "0"
    if not check("tccli redis DescribeInstanceBackups --Status '[2]' shows it", ok,
                 (out + err)[:400]):
        return
    backup_id = mine[0]["BackupId"]

    rep = redis_session(host, port, ["AUTH " + PASSWORD, "SET cli:1 beta", "SET cli:2 gamma"])
    check("redis: keys changed after the tccli backup", rep == [b"+OK", b"+OK", b"+OK"],
          repr(rep))

    rc, out, err, r = tccli(["redis", "RestoreInstance", "--InstanceId", redis_id,
                             "--BackupId", backup_id, "--Password", "Wrong123pw",
                             "--endpoint", endpoint])
    check("tccli RestoreInstance with a wrong password: exit 255, PasswordError",
          rc == 255 and "InvalidParameterValue.PasswordError" in out + err,
          "exit %d: %s" % (rc, (out + err)[:300]))

    rc, out, err, r = tccli(["redis", "RestoreInstance", "--InstanceId", redis_id,
                             "--BackupId", backup_id, "--Password", PASSWORD,
                             "--endpoint", endpoint])
    task = (r or {}).get("TaskId")
    if not check("tccli redis RestoreInstance returns a TaskId",
                 rc == 0 and isinstance(task, int), (out + err)[:400]):
        return
    if not tccli_wait(task, endpoint, "RestoreInstance"):
        return
    rep = redis_session(host, port, ["AUTH " + PASSWORD, "GET cli:1", "GET cli:2"])
    check("after the tccli restore the keys hold the backed-up values",
          rep == [b"+OK", b"$5\r\nalpha", b"$-1"], repr(rep))


def tccli_wait(task, endpoint, what):
    def info():
        return tccli(["redis", "DescribeTaskInfo", "--TaskId", str(task),
                      "--endpoint", endpoint])[3] or {}

    r = poll("tccli DescribeTaskInfo", info,
             lambda a: a.get("Status") not in (None, "preparing", "running"))
    return check("tccli redis DescribeTaskInfo (%s task %s) reaches \"succeed\"" % (what, task),
                 r is not None and r.get("Status") == "succeed", brief(r or {}))


def lifecycle_walk():
    """CreateInstances (prepaid and postpaid) -> running -> Destroy*Instance -> isolated ->
    CleanUpInstance -> gone, all with the SDK."""
    c = sdk()

    def status(iid):
        r = c.DescribeInstances(request(models.DescribeInstancesRequest, InstanceId=iid))
        return r.InstanceSet[0].Status if r.InstanceSet else None

    price = c.InquiryPriceCreateInstance(request(
        models.InquiryPriceCreateInstanceRequest, TypeId=17, MemSize=1024, GoodsNum=1,
        BillingMode=0, ZoneId=100002))
    check("InquiryPriceCreateInstance BillingMode 0: the price of an hour (12 pent)",
          price.Price == 12.0 and price.AmountUnit == "pent", brief(price))
    for billing, destroy in ((0, "DestroyPostpaidInstance"), (1, "DestroyPrepaidInstance")):
        fields = dict(TypeId=17, MemSize=1024, GoodsNum=1, BillingMode=billing, ZoneId=100002,
                      Password=PASSWORD)
        if billing == 1:
            fields["Period"] = 1
        r = c.CreateInstances(request(models.CreateInstancesRequest, **fields))
        if not check("CreateInstances BillingMode %d returns one InstanceId" % billing,
                     len(r.InstanceIds or []) == 1, brief(r)):
            continue
        iid = r.InstanceIds[0]
        got = poll("DescribeInstances", lambda: status(iid), lambda s: s == 2)
        r = c.DescribeInstances(request(models.DescribeInstancesRequest, InstanceId=iid))
        inst = r.InstanceSet[0] if r.InstanceSet else None
        check("BillingMode %d instance running, DescribeInstances shows its BillingMode" % billing,
              got == 2 and inst is not None and inst.BillingMode == billing, brief(r))
        other = "DestroyPrepaidInstance" if billing == 0 else "DestroyPostpaidInstance"
        next_second()
        e = sdk_error(lambda: getattr(c, other)(request(
            getattr(models, other + "Request"), InstanceId=iid)))
        check("%s of a BillingMode %d instance raises InvalidParameterValue" % (other, billing),
              e is not None and e.code == "InvalidParameterValue", repr(e))
        next_second()
        getattr(c, destroy)(request(getattr(models, destroy + "Request"), InstanceId=iid))
        got = poll("DescribeInstances", lambda: status(iid), lambda s: s == -2)
        check("%s isolates it (Status -2)" % destroy, got == -2, str(got))
        next_second()
        r = c.CleanUpInstance(request(models.CleanUpInstanceRequest, InstanceId=iid))
        wait_task_sdk(c, r.TaskId, "CleanUpInstance")
        got = poll("DescribeInstances", lambda: status(iid), lambda s: s is None)
        check("CleanUpInstance removes it (DescribeInstances lists nothing)", got is None,
              str(got))


def replicas_walk():
    """CreateInstances with RedisReplicasNum 3 -> DescribeInstances says 3, DescribeInstanceNodeInfo
    lists a master and 3 slaves, the master has 3 replicas connected; UpgradeInstance (the
    current MemSize repeated) to 2 replicas -> its task succeeds, 2 replicas, 3 nodes."""
    c = sdk()

    def described(iid):
        r = c.DescribeInstances(request(models.DescribeInstancesRequest, InstanceId=iid))
        return r.InstanceSet[0] if r.InstanceSet else None

    def roles(iid):
        r = c.DescribeInstanceNodeInfo(request(models.DescribeInstanceNodeInfoRequest,
                                               InstanceId=iid))
        return r.RedisCount, sorted((n.NodeRole for n in r.Redis or []),
                                    key=lambda role: role != "master"), r

    def replicas_connected(inst):
        rep = redis_session(inst.WanIp, int(inst.Port), ["AUTH " + PASSWORD, "INFO replication"])
        info = rep[1].decode(errors="replace") if len(rep) == 2 else ""
        return "connected_slaves:" in info and info.split("connected_slaves:")[1].split()[0]

    r = c.CreateInstances(request(models.CreateInstancesRequest, TypeId=17, MemSize=1024,
                                  GoodsNum=1, Period=1, BillingMode=1, ZoneId=100002,
                                  Password=PASSWORD, RedisShardNum=1, RedisReplicasNum=3))
    if not check("CreateInstances RedisReplicasNum 3 returns one InstanceId",
                 len(r.InstanceIds or []) == 1, brief(r)):
        return
    iid = r.InstanceIds[0]
    inst = poll("DescribeInstances", lambda: described(iid), lambda i: i and i.Status == 2)
    check("the 3-replica instance runs; DescribeInstances RedisReplicasNum 3",
          inst is not None and inst.RedisReplicasNum == 3 and inst.RedisShardNum == 1,
          brief(inst or {}))
    if inst is None:
        return
    count, seen, r = roles(iid)
    check("DescribeInstanceNodeInfo lists 4 nodes: a master and 3 slaves",
          count == 4 and seen == ["master", "slave", "slave", "slave"], brief(r))
    got = replicas_connected(inst)
    check("redis: the master has 3 replicas connected", got == "3", repr(got))

    next_second()
    r = c.UpgradeInstance(request(models.UpgradeInstanceRequest, InstanceId=iid, MemSize=1024,
                                  RedisShardNum=1, RedisReplicasNum=2))
    if not check("UpgradeInstance to RedisReplicasNum 2 (MemSize repeated) returns a DealId",
                 bool(r.DealId), brief(r)):
        return
    r = c.DescribeTaskList(request(models.DescribeTaskListRequest, InstanceId=iid,
                                   TaskTypes=["029"], Limit=10, Offset=0))
    tasks = [t.TaskId for t in r.Tasks or []]
    if not check("DescribeTaskList TaskTypes [\"029\"] shows the replica change",
                 len(tasks) == 1, brief(r)):
        return
    wait_task_sdk(c, tasks[0], "UpgradeInstance")
    inst = described(iid)
    count, seen, r = roles(iid)
    check("after UpgradeInstance: RedisReplicasNum 2, Status 2, 3 nodes",
          inst is not None and inst.RedisReplicasNum == 2 and inst.Status == 2 and count == 3
          and seen == ["master", "slave", "slave"], brief(inst or {}) + " " + brief(r))
    got = replicas_connected(inst)
    check("redis: the master has 2 replicas connected", got == "2", repr(got))


def cluster_walk():
    """CreateInstances TypeId 18 with 3 shards of 1 replica -> DescribeInstances says Type 18,
    cluster, 3 shards; redis-py's RedisCluster, given the instance's address alone, writes 1000
    keys across the slots and reads them back; DescribeInstanceShards lists 3 masters holding
    every slot and 1000 keys between them; DestroyPrepaidInstance deletes it."""
    c = sdk()

    def described(iid):
        r = c.DescribeInstances(request(models.DescribeInstancesRequest, InstanceId=iid))
        return r.InstanceSet[0] if r.InstanceSet else None

    r = c.CreateInstances(request(models.CreateInstancesRequest, TypeId=18, MemSize=1024,
                                  GoodsNum=1, Period=1, BillingMode=1, ZoneId=100002,
                                  Password=PASSWORD, RedisShardNum=3, RedisReplicasNum=1))
    if not check("CreateInstances TypeId 18 returns one InstanceId",
                 len(r.InstanceIds or []) == 1, brief(r)):
        return
    iid = r.InstanceIds[0]
    inst = poll("DescribeInstances", lambda: described(iid), lambda i: i and i.Status == 2)
    if not check("the cluster runs: Type 18, ProductType cluster, 3 shards of 1024 MB, Size 3072",
                 inst is not None and inst.Type == 18 and inst.ProductType == "cluster"
                 and inst.RedisShardNum == 3 and inst.RedisShardSize == 1024
                 and inst.Size == 3072, brief(inst or {})):
        return
    rc = RedisCluster(host=inst.WanIp, port=int(inst.Port), password=PASSWORD,
                      socket_timeout=5)
    try:
        for i in range(1000):
            rc.set("cluster-key-%d" % i, "v%d" % i)
        wrong = [i for i in range(1000) if rc.get("cluster-key-%d" % i) != b"v%d" % i]
        check("redis-py RedisCluster from the instance's address: 1000 keys read back",
              not wrong, "wrong: %r" % wrong[:5])
        masters = {n.name for n in rc.get_primaries()}
        check("redis-py sees 3 masters", len(masters) == 3, repr(masters))
    finally:
        rc.close()
    r = c.DescribeInstanceShards(request(models.DescribeInstanceShardsRequest, InstanceId=iid))
    masters = [s for s in r.InstanceShards or [] if s.Role == 0]
    check("DescribeInstanceShards: 6 nodes, 3 masters with 1000 keys and every slot",
          r.TotalCount == 6 and len(masters) == 3 and sum(s.Keys for s in masters) == 1000
          and sorted(s.Slots for s in masters) == ["0-5460", "10923-16383", "5461-10922"],
          brief(r))
    next_second()
    r = c.DestroyPrepaidInstance(request(models.DestroyPrepaidInstanceRequest, InstanceId=iid))
    check("DestroyPrepaidInstance of the cluster returns a DealId", bool(r.DealId), brief(r))


def main():
    lifecycle_walk()
    replicas_walk()
    cluster_walk()
    redis_id = create_instance_v2()
    if not redis_id:
        return
    addr = sdk_walk(redis_id)
    if not addr:
        return
    cloud_monitor_walk(redis_id)
    tccli_walk(redis_id, *addr)


if __name__ == "__main__":
    try:
        main()
    except Exception:
        traceback.print_exc()
        check("the walk ran to its end without an exception", False)
    finally:
        if RESULT_FILE:
            with open(RESULT_FILE, "w") as f:
                json.dump({"passed": passed, "failed": failed}, f)
    print("v3_sdk: %d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed else 0)
