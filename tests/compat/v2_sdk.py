#!/usr/bin/env python3
"""Compatibility test: drives crsd's Tencent Cloud CRS API v2 with the public
qcloudapi-sdk-python 2.0.15, used exactly as a user would (HTTPS, the SDK's own signing,
list flattening and form encoding), then checks the Redis instance it made with a raw socket.

Environment: CRSD_HOST (host:port of crsd's HTTPS listener), CRSD_SECRET_ID, CRSD_SECRET_KEY,
SSL_CERT_FILE (the test CA), and optionally CRSD_COMPAT_RESULT (a file that receives
{"passed": N, "failed": M}). Prints one line per check; exits 1 if any check failed.
"""

import json
import os
import socket
import sys
import time
import traceback
import urllib.error
import urllib.request

from QcloudApi.qcloudapi import QcloudApi
import QcloudApi.modules.redis as redis_module

HOST = os.environ["CRSD_HOST"]
SECRET_ID = os.environ["CRSD_SECRET_ID"]
SECRET_KEY = os.environ["CRSD_SECRET_KEY"]
RESULT_FILE = os.environ.get("CRSD_COMPAT_RESULT")

PASSWORD = "49A2d!e@f12e"
NEW_PASSWORD = "N3w(pw)x^9"  # specials that urlencode escapes: ( ) ^
NEW_NAME = "兼容测试_SDK-1"  # UTF-8 in a signed value
POLL_LIMIT_SECS = 60

redis_module.Redis.requestHost = HOST

passed = 0
failed = 0


def check(name, ok, detail=""):
    global passed, failed
    if ok:
        passed += 1
        print("ok   %s" % name, flush=True)
    else:
        failed += 1
        print("FAIL %s%s" % (name, (": " + detail) if detail else ""), flush=True)
    return ok


def client(method="GET", secret_id=SECRET_ID, secret_key=SECRET_KEY, signature_method=None):
    config = {"Region": "gz", "secretId": secret_id, "secretKey": secret_key, "method": method}
    api = QcloudApi("redis", config)
    if signature_method:
        api.setSignatureMethod(signature_method)  # the SDK stores it as config['SignatureMethod']
    return api


def call(api, action, params):
    raw = api.call(action, params)
    try:
        return json.loads(raw)
    except ValueError:
        raise AssertionError("%s: answer is not JSON: %r" % (action, raw[:300]))


def success(answer):
    return answer.get("code") == 0 and answer.get("codeDesc") == "Success"


def brief(answer):
    return json.dumps(answer, ensure_ascii=False)[:400]


def poll(what, fn, done):
    """Calls fn() until done(answer) holds; returns the last answer (or None on timeout)."""
    deadline = time.time() + POLL_LIMIT_SECS
    last = None
    while time.time() < deadline:
        last = fn()
        if done(last):
            return last
        time.sleep(0.25)
    print("     %s: gave up after %ss, last answer %s" % (what, POLL_LIMIT_SECS, brief(last or {})))
    return None


# ---- a Redis client with a raw socket (RESP inline commands) --------------------------------

def redis_session(host, port, commands):
    """Opens a connection, sends each inline command and returns the raw replies (one each)."""
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
            return line.rstrip(b"\r\n")  # b"$-1": nil
        body = f.read(n + 2)
        return line + body.rstrip(b"\r\n")  # b"$1\r\nv"
    return line.rstrip(b"\r\n")


# ---- the walk -------------------------------------------------------------------------------

def main():
    api = client("GET")

    # DescribeRedisZones
    r = call(api, "DescribeRedisZones", {})
    zones = {}
    for z in (r.get("data") or {}).get("zones") or []:
        zones.update(z)
    check("DescribeRedisZones lists zone 100002", success(r) and "100002" in zones, brief(r))

    # DescribeRedisProduct (zoneIds flattened by the SDK to zoneIds.0)
    r = call(api, "DescribeRedisProduct", {"zoneIds": [100002]})
    products = r.get("data") or []
    ok = (
        success(r)
        and isinstance(products, list)
        and any(p.get("zoneId") == 100002 and "2" in (p.get("types") or {}) for p in products)
    )
    check("DescribeRedisProduct offers type 2 in zone 100002", ok, brief(r))

    # InquiryRedisPrice
    r = call(api, "InquiryRedisPrice",
             {"zoneId": 100002, "typeId": 2, "memSize": 1024, "goodsNum": 1, "period": 2})
    check("InquiryRedisPrice 1024 MB x 2 months = 16000",
          success(r) and (r.get("data") or {}).get("price") == 16000, brief(r))

    # CreateRedis
    r = call(api, "CreateRedis", {"zoneId": 100002, "typeId": 2, "memSize": 1024,
                                  "goodsNum": 1, "period": 2, "password": PASSWORD})
    deal_id = (r.get("data") or {}).get("dealId")
    if not check("CreateRedis returns a dealId", success(r) and bool(deal_id), brief(r)):
        return

    # DescribeRedisDealDetail until 发货成功 (status 4); dealIds list -> dealIds.0
    def deal():
        return call(api, "DescribeRedisDealDetail", {"dealIds": [deal_id]})

    def deal_status(a):
        details = a.get("dealDetails") or []
        return details[0].get("status") if details else None

    r = poll("DescribeRedisDealDetail", deal, lambda a: deal_status(a) not in (None, 1, 2, 3, 12))
    ok = r is not None and success(r) and deal_status(r) == 4
    if not check("DescribeRedisDealDetail reaches status 4 (发货成功)", ok, brief(r or {})):
        return
    detail = r["dealDetails"][0]
    redis_ids = (detail.get("goodsDetail") or {}).get("redisIds") or []
    check("deal detail names one instance and the price 16000",
          len(redis_ids) == 1 and detail.get("price") == 16000, brief(r))
    if not redis_ids:
        return
    redis_id = redis_ids[0]

    # DescribeRedis
    r = call(api, "DescribeRedis", {"limit": 10, "offset": 0})
    found = [i for i in ((r.get("data") or {}).get("redisSet") or []) if i.get("redisId") == redis_id]
    ok = success(r) and len(found) == 1 and found[0].get("wanIp") and found[0].get("port")
    if not check("DescribeRedis shows %s with wanIp and port" % redis_id, ok, brief(r)):
        return
    inst = found[0]
    host, port = inst["wanIp"], int(inst["port"])
    check("DescribeRedis: size 1024, typeId 2, zoneId 100002",
          inst.get("size") == 1024 and inst.get("typeId") == 2 and inst.get("zoneId") == 100002,
          brief(inst))

    # The instance answers with the password it was created with
    rep = redis_session(host, port, ["AUTH " + PASSWORD, "SET k v", "GET k"])
    check("redis %s:%s: AUTH, SET k v, GET k" % (host, port),
          rep == [b"+OK", b"+OK", b"$1\r\nv"], repr(rep))

    # HmacSHA256 signature, GET, filter by redisId
    api256 = client("GET", signature_method="HmacSHA256")
    r = call(api256, "DescribeRedis", {"limit": 10, "offset": 0, "redisId": redis_id})
    ok = success(r) and r.get("totalCount") == 1 and \
        [i.get("redisId") for i in (r.get("data") or {}).get("redisSet") or []] == [redis_id]
    check("DescribeRedis (GET, HmacSHA256) filtered by redisId", ok, brief(r))

    # ModifyRedisName with UTF-8, POST form body, then read it back
    api_post = client("POST", signature_method="HmacSHA1")
    r = call(api_post, "ModifyRedisName", {"redisId": redis_id, "redisName": NEW_NAME})
    check("ModifyRedisName (POST, UTF-8 name)", success(r), brief(r))
    r = call(api, "DescribeRedis", {"limit": 10, "offset": 0, "redisId": redis_id})
    names = [i.get("redisName") for i in (r.get("data") or {}).get("redisSet") or []]
    check("DescribeRedis shows the new name", success(r) and names == [NEW_NAME], brief(r))

    # ModfiyRedisPassword (the seed's spelling) -> task
    r = call(api, "ModfiyRedisPassword",
             {"redisId": redis_id, "oldPassword": PASSWORD, "password": NEW_PASSWORD})
    task = (r.get("data") or {}).get("requestId")
    if not check("ModfiyRedisPassword returns a requestId", success(r) and task is not None, brief(r)):
        return
    check_task(api, task, "ModfiyRedisPassword")

    rep = redis_session(host, port, ["AUTH " + PASSWORD])
    check("old password is refused", rep[0].startswith(b"-"), repr(rep))
    rep = redis_session(host, port, ["AUTH " + NEW_PASSWORD, "GET k"])
    check("new password works, data kept", rep == [b"+OK", b"$1\r\nv"], repr(rep))

    # ClearRedis: POST, HmacSHA1 set explicitly
    r = call(api_post, "ClearRedis", {"redisId": redis_id, "password": NEW_PASSWORD})
    task = (r.get("data") or {}).get("requestId")
    if check("ClearRedis (POST, HmacSHA1) returns a requestId", success(r) and task is not None, brief(r)):
        check_task(api, task, "ClearRedis")
    rep = redis_session(host, port, ["AUTH " + NEW_PASSWORD, "GET k"])
    check("after ClearRedis GET k is nil", rep == [b"+OK", b"$-1"], repr(rep))

    # Errors
    r = call(api_post, "ClearRedis", {"redisId": redis_id, "password": "Wrong123pw"})
    check("ClearRedis with a wrong password: code 5100, (10712)",
          r.get("code") == 5100 and str(r.get("message", "")).startswith("(10712)"), brief(r))

    bad = client("GET", secret_key=SECRET_KEY + "x")
    r = call(bad, "DescribeRedis", {"limit": 10, "offset": 0})
    check("a bad secretKey: code 4100", r.get("code") == 4100 and "data" not in r, brief(r))

    unknown = client("POST", secret_id="AKIDnoSuchKey000000000000000000000000")
    r = call(unknown, "DescribeRedis", {"limit": 10, "offset": 0})
    check("an unknown SecretId: code 4104", r.get("code") == 4104, brief(r))

    backup_and_restore(api, api_post, redis_id, host, port)


def backup_and_restore(api, api_post, redis_id, host, port):
    """ManualBackupInstance, GetRedisBackupList, GetBackupDownloadUrl (and the download
    itself, over HTTPS verified with the test CA), RestoreInstance and one of its refusals."""
    auth = "AUTH " + NEW_PASSWORD
    rep = redis_session(host, port, [auth, "SET bk:1 one", "SET bk:2 two", "DEL bk:3"])
    check("redis: keys written before the backup", rep == [b"+OK", b"+OK", b"+OK", b":0"], repr(rep))

    remark = "compat backup"
    r = call(api, "ManualBackupInstance", {"redisId": redis_id, "remark": remark})
    task = (r.get("data") or {}).get("requestId")
    if not check("ManualBackupInstance returns a requestId", success(r) and task is not None, brief(r)):
        return
    if not check_task(api, task, "ManualBackupInstance"):
        return

    r = call(api, "GetRedisBackupList", {"redisId": redis_id, "limit": 10, "offset": 0})
    found = [b for b in ((r.get("data") or {}).get("redisBackupSet") or []) if b.get("remark") == remark]
    ok = (
        success(r)
        and r.get("totalCount") == 1
        and len(found) == 1
        and found[0].get("backupType") == "manualBackupInstance"
        and found[0].get("status") == 2
        and found[0].get("locked") == 0
        and bool(found[0].get("backupId"))
        and bool(found[0].get("startTime"))
    )
    if not check("GetRedisBackupList shows the backup (manualBackupInstance, status 2, locked 0)",
                 ok, brief(r)):
        return
    backup_id = found[0]["backupId"]

    r = call(api, "GetBackupDownloadUrl", {"redisId": redis_id, "backupId": backup_id})
    urls = r.get("data") or {}
    intranet, extranet = urls.get("intranet") or "", urls.get("extranet") or ""
    ok = success(r) and intranet.startswith("https://") and extranet.startswith("https://") \
        and ("/download/%s.rdb?" % backup_id) in intranet
    if check("GetBackupDownloadUrl returns intranet and extranet URLs", ok, brief(r)):
        # urllib verifies the server against SSL_CERT_FILE (the test CA), as wget/curl would.
        try:
            with urllib.request.urlopen(intranet, timeout=30) as resp:
                status, body = resp.status, resp.read()
            check("download over HTTPS: 200 and an RDB (REDIS00...)",
                  status == 200 and body.startswith(b"REDIS00"), "%s %r" % (status, body[:16]))
        except Exception as e:  # noqa: BLE001 - reported as a failed check
            check("download over HTTPS: 200 and an RDB (REDIS00...)", False, repr(e))
        try:
            urllib.request.urlopen(intranet[: intranet.index("?")] + "?x", timeout=30)
            check("download with a bad token is refused", False, "answered 2xx")
        except urllib.error.HTTPError as e:
            check("download with a bad token is refused (403)", e.code == 403, repr(e))

    rep = redis_session(host, port, [auth, "SET bk:1 changed", "DEL bk:2", "SET bk:3 new"])
    check("redis: keys changed after the backup", rep == [b"+OK", b"+OK", b":1", b"+OK"], repr(rep))

    r = call(api_post, "RestoreInstance",
             {"redisId": redis_id, "password": "Wrong123pw", "backupId": backup_id})
    check("RestoreInstance with a wrong password: code 5100, (10712)",
          r.get("code") == 5100 and "(10712)" in str(r.get("message", "")), brief(r))

    r = call(api, "RestoreInstance",
             {"redisId": redis_id, "password": NEW_PASSWORD, "backupId": backup_id})
    task = (r.get("data") or {}).get("requestId")
    if not check("RestoreInstance returns a requestId", success(r) and task is not None, brief(r)):
        return
    if not check_task(api, task, "RestoreInstance"):
        return
    rep = redis_session(host, port, [auth, "GET bk:1", "GET bk:2", "GET bk:3"])
    check("after RestoreInstance the keys hold the backed-up values",
          rep == [b"+OK", b"$3\r\none", b"$3\r\ntwo", b"$-1"], repr(rep))

    r = call(api, "GetRedisBackupList", {"redisId": redis_id, "limit": 10, "offset": 0})
    found = [b for b in ((r.get("data") or {}).get("redisBackupSet") or []) if b.get("backupId") == backup_id]
    check("after the restore the backup is unlocked (status 2, locked 0)",
          success(r) and len(found) == 1 and found[0].get("status") == 2 and found[0].get("locked") == 0,
          brief(r))
    r = call(api, "DescribeRedis", {"limit": 10, "offset": 0, "redisId": redis_id})
    states = [i.get("status") for i in (r.get("data") or {}).get("redisSet") or []]
    check("after the restore the instance is running (status 2)", success(r) and states == [2], brief(r))


def check_task(api, task, what):
    def info():
        return call(api, "DescribeTaskInfo", {"requestId": task})

    def status(a):
        return (a.get("data") or {}).get("status")

    r = poll("DescribeTaskInfo", info, lambda a: status(a) in (2, 3, -1))
    return check("DescribeTaskInfo(%s task %s) reaches status 2" % (what, task),
                 r is not None and success(r) and status(r) == 2, brief(r or {}))


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
    print("v2_sdk: %d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed else 0)
