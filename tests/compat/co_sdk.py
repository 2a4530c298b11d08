#!/usr/bin/env python3
"""Compatibility test: drives crsd's Capital Online (首云 cdsapi) Redis OpenAPI on /redis with

* the public cds-python-sdk 0.14 from PyPI: its generic
  `capitalonline.common.client.Client(...).call_json(action, params)`, HMAC-SHA1, GET (all
  parameters signed in the query) and POST (business parameters signed in the query *and*
  sent as the JSON body);
* the reference code of the API documentation, as printed: the 2026 `quote2` +
  `get_url_with_signature` + `invoke_cdsapi` (GET business parameters end up in the query
  twice, once signed and once more after `Signature`), and the older
  `get_signature(action, ak, secret, method, url, param={})` that the Redis page calls, with
  the least change that makes it run on Python 3, for POST with `requests.post(url, json=body)`;
* a request shaped like cds-gic-sdk-go's: POST, the common parameters sorted in the query,
  a compact JSON body with `null` for every unset optional, and no Content-Type header;

then checks the instance with redis-cli, downloads a backup over HTTPS, and checks one
cross-dialect view (the instance through the Tencent API 3.0 SDK).

Environment: CRSD_HOST (host:port of crsd's HTTPS listener), CRSD_SECRET_ID, CRSD_SECRET_KEY
(an account, shared with the Tencent dialects), CRSD_CA (the test CA, PEM),
REQUESTS_CA_BUNDLE (the same CA: what `requests`, and so the reference code, trusts), and
optionally CRSD_COMPAT_RESULT (a file that receives {"passed": N, "failed": M}) and
CRSD_REDIS_CLI (the redis-cli executable). Prints one line per check; exits 1 if any failed.

TLS trust: the SDK calls requests with an explicit `verify=certifi.where()` unless
HttpProfile(certification=PATH) is given, so REQUESTS_CA_BUNDLE/SSL_CERT_FILE do not reach it
(checked below, not counted); it is given the CA that way. The reference code calls requests
with no `verify`, so requests' REQUESTS_CA_BUNDLE applies, as it would for a user.
"""

import http.client
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import time
import traceback
import uuid as uuid_module

import requests

from capitalonline.common.client import Client
from capitalonline.common.credential import Credential
from capitalonline.common.exception.cds_sdk_exception import CdsSDKException
from capitalonline.common.profile.client_profile import ClientProfile
from capitalonline.common.profile.http_profile import HttpProfile

HOST = os.environ["CRSD_HOST"]
SECRET_ID = os.environ["CRSD_SECRET_ID"]
SECRET_KEY = os.environ["CRSD_SECRET_KEY"]
CA = os.environ["CRSD_CA"]
RESULT_FILE = os.environ.get("CRSD_COMPAT_RESULT")
REDIS_CLI = os.environ.get("CRSD_REDIS_CLI") or shutil.which("redis-cli") or "redis-cli"

# The reference code's globals (its `AK`/`SK` and a `REDIS_URL`, which the docs use and never
# define: the Redis page's address with the scheme of the other products' URLs).
AK = SECRET_ID
SK = SECRET_KEY
REDIS_URL = "https://%s/redis" % HOST

PREFERRED_REGION = "CN_Guangzhou_A"
PASSWORD = "CoSdk!pw9x"
INSTANCE_NAME = "co-sdk-测试"  # UTF-8 in a value the SDK signs in the query
GO_INSTANCE_NAME = "co-go-style"
VDC_ID = "vdc-co-compat"
PIPE_ID = "pipe-co-compat"
REDIS_KEY = "co:key"
REDIS_VALUE = "hello-首云"
POLL_LIMIT_SECS = 60
HTTP_TIMEOUT_SECS = 30

passed = 0
failed = 0

# Every request that leaves through requests (the SDK's and the reference code's), as sent:
# a read-only tap on Session.send, to check the SDK's wire form.
SENT = []
_send = requests.sessions.Session.send


def _tap(self, request, **kwargs):
    SENT.append(request)
    return _send(self, request, **kwargs)


requests.sessions.Session.send = _tap


def check(name, ok, detail=""):
    global passed, failed
    if ok:
        passed += 1
        print("ok   co: %s" % name, flush=True)
    else:
        failed += 1
        print("FAIL co: %s%s" % (name, (": " + str(detail)[:600]) if detail else ""), flush=True)
    return bool(ok)


def note(msg):
    print("     co: %s" % msg, flush=True)


def brief(x):
    return json.dumps(x, ensure_ascii=False, default=str)[:500]


def poll(what, fn, done):
    deadline = time.time() + POLL_LIMIT_SECS
    last = None
    while time.time() < deadline:
        last = fn()
        if done(last):
            return last
        time.sleep(0.25)
    note("%s: gave up after %ss, last answer %s" % (what, POLL_LIMIT_SECS, brief(last)))
    return None


# ---- the reference code, 2026 (首云OpenAPI(v1.2).md §调用示例), verbatim --------------------

import base64
import datetime
import hmac
import requests
import urllib.parse
import uuid

from hashlib import sha1


def quote2(string, safe='/', encoding=None, errors=None):
    """编码参数，转义特殊字符"""
    res = urllib.parse.quote(string, safe, encoding, errors)
    res = res.replace('+', '%20')
    res = res.replace('*', '%2A')
    res = res.replace('%7E', '~')
    return res


def get_url_with_signature(action, access_key, secret_key, method, base_url, params=None):
    """
    获取可供调用的已签名url
    :param action: 请求动作
    :param access_key: AccessKey
    :param secret_key: SecretKey
    :param method: 请求方法(POST/GET)
    :param base_url: 接口的API请求地址
    :param params: 请求的query参数(注意不是POST方法的JSON body参数)
    :return: 经过签名的最终URL，可直接调用
    """
    timestamp = datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')
    all_params = {
        'Action': action,
        'AccessKeyId': access_key,
        'SignatureMethod': 'HMAC-SHA1',
        'SignatureNonce': str(uuid.uuid1()),
        'SignatureVersion': '1.0',
        "Timestamp": timestamp,
        'Version': '2019-08-08',
    }
    if params:
        all_params.update(params)
    sorted_params = sorted(all_params.items(), key=lambda x: x[0])
    param_str = urllib.parse.urlencode(sorted_params, quote_via=quote2)
    string_to_sign = method + '&%2F&' + quote2(param_str)
    h = hmac.new(secret_key.encode('utf-8'), string_to_sign.encode('utf-8'), sha1)
    signature = base64.b64encode(h.digest())
    all_params['Signature'] = signature.decode('utf-8')
    url = base_url + '/?' + urllib.parse.urlencode(all_params)
    return url


def invoke_cdsapi(action: str, method: str, base_url: str, body: dict = None, params: dict = None):
    url = get_url_with_signature(action, AK, SK, method, base_url, params=params)
    if method.lower() == 'post':
        return requests.post(url, json=body, params=params)
    elif method.lower() == 'get':
        return requests.get(url, json=body, params=params)
    else:
        raise ValueError(f'method {method} not allowed')


# ---- the reference code before 2026 (the one the Redis page calls) ------------------------
# As printed it mixes Python 2 (`str.decode(sys.stdin.encoding)`, hmac over str,
# `base64.encodestring`) with `urllib.parse`; the three marked lines are the least change
# that runs on Python 3. The rest is verbatim, including a bytes `Signature` in the dict.

import time
import sys


def percentEncode(str):
    """将特殊转义字符替换"""
    # py3: was urllib.parse.quote(str.decode(sys.stdin.encoding).encode('utf8'), '')
    res = urllib.parse.quote(str, '')
    res = res.replace('+', '%20')
    res = res.replace('*', '%2A')
    res = res.replace('%7E', '~')
    return res


def get_signature(action, ak, access_key_secret, method, url, param={}):
    """
    @params: action: 接口动作
    @params: ak: ak值
    @params: access_key_secret: ak秘钥
    @params: method: 接口调用方法(POST/GET)
    @params: param: 接口调用Query中参数(非POST方法Body中参数)
    @params: url: 接口调用路径
    @return: 请求的url可直接调用
    """
    timestamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    D = {
        'Action': action,
        'AccessKeyId': ak,
        'SignatureMethod': 'HMAC-SHA1',
        'SignatureNonce': str(uuid.uuid1()),
        'SignatureVersion': "1.0",
        "Timestamp": timestamp,
        'Version': '2019-08-08',
    }
    if param:
        D.update(param)
    sortedD = sorted(D.items(), key=lambda x: x[0])
    canstring = ''
    for k, v in sortedD:
        canstring += '&' + percentEncode(k) + '=' + percentEncode(v)
    stringToSign = method + '&%2F&' + percentEncode(canstring[1:])
    # py3: was hmac.new(access_key_secret, stringToSign, sha1)
    h = hmac.new(access_key_secret.encode('utf-8'), stringToSign.encode('utf-8'), sha1)
    signature = base64.encodebytes(h.digest()).strip()  # py3.9: was base64.encodestring
    D['Signature'] = signature
    url = url + '/?' + urllib.parse.urlencode(D)
    return url


def old_post(action, body, secret=None):
    """The Redis page's POST pattern: sign with param={}, then requests.post(url, json=body)."""
    url = get_signature(action, AK, secret or SK, "POST", REDIS_URL, param={})
    res = requests.post(url, json=body, timeout=HTTP_TIMEOUT_SECS)
    return res.status_code, json.loads(res.content)


def ref_get(action, params=None, ak=None, sk=None):
    """A GET through the 2026 reference; (status, answer, the URL requests sent)."""
    if ak or sk:
        url = get_url_with_signature(action, ak or AK, sk or SK, "GET", REDIS_URL, params=params)
        res = requests.get(url, json=None, params=params, timeout=HTTP_TIMEOUT_SECS)
    else:
        res = invoke_cdsapi(action, "GET", REDIS_URL, params=params)
    return res.status_code, res.json(), res.request.url


# ---- a cds-gic-sdk-go shaped request -------------------------------------------------------

def go_style_post(action, body):
    """POST as cds-gic-sdk-go sends it: the common parameters only, sorted (url.Values.Encode),
    signed; `json.Marshal` of the request struct (compact, nulls for unset optionals); the
    headers Go's http.Client sends and no Content-Type (the SDK never applies its header map).
    Returns (status, answer)."""
    params = {
        "Action": action,
        "AccessKeyId": AK,
        "SignatureMethod": "HMAC-SHA1",
        "SignatureNonce": str(uuid_module.uuid4()),
        "SignatureVersion": "1.0",
        "Timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "Version": "2019-08-08",
    }
    enc = lambda s: urllib.parse.quote(s, safe="")  # url.QueryEscape for these values
    canonical = "&".join(enc(k) + "=" + enc(params[k]) for k in sorted(params))
    to_sign = "POST&%2F&" + enc(canonical)
    params["Signature"] = base64.b64encode(
        hmac.new(SK.encode(), to_sign.encode(), sha1).digest()).decode()
    query = urllib.parse.urlencode(sorted(params.items()))
    payload = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
    host, port = HOST.rsplit(":", 1)
    conn = http.client.HTTPSConnection(host, int(port), timeout=HTTP_TIMEOUT_SECS,
                                       context=ssl.create_default_context(cafile=CA))
    try:
        conn.putrequest("POST", "/redis/?" + query, skip_accept_encoding=True)
        conn.putheader("User-Agent", "Go-http-client/1.1")
        conn.putheader("Content-Length", str(len(payload)))
        conn.putheader("Accept-Encoding", "gzip")
        conn.endheaders(payload)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


# ---- the SDK -------------------------------------------------------------------------------

def sdk(method, secret_key=SECRET_KEY, certification=CA):
    hp = HttpProfile(endpoint=HOST + "/redis/", protocol="https", reqMethod=method,
                     reqTimeout=HTTP_TIMEOUT_SECS, certification=certification)
    cp = ClientProfile(signMethod="HMAC-SHA1", httpProfile=hp)
    return Client("redis", "2019-08-08", Credential(SECRET_ID, secret_key), PREFERRED_REGION, cp)


SDK_GET = None
SDK_POST = None


def sdk_error(fn):
    """Runs fn; returns (the CdsSDKException it raised or None, the answer JSON in it)."""
    try:
        fn()
    except CdsSDKException as e:
        try:
            return e, json.loads(e.get_message())
        except (TypeError, ValueError):
            return e, None
    return None, None


# ---- shape checks --------------------------------------------------------------------------

def success(r, data_type):
    """The success envelope: Code "Success", a str Message, Data of the given type, TaskId a
    str if present."""
    return isinstance(r, dict) and r.get("Code") == "Success" \
        and isinstance(r.get("Message"), str) and isinstance(r.get("Data"), data_type) \
        and isinstance(r.get("TaskId", ""), str)


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def typed(obj, strs=(), ints=(), lists=()):
    """The names of the fields of obj whose JSON type is wrong."""
    bad = [k for k in strs if not isinstance(obj.get(k), str)]
    bad += [k for k in ints if not is_int(obj.get(k))]
    bad += [k for k in lists if not isinstance(obj.get(k), list)]
    return bad


TIME_RE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$")

INSTANCE_STRS = ("InstanceUuid", "InstanceName", "RegionId", "DisplayName", "VdcId", "VdcName",
                 "IP", "Status", "StatusStr", "Version", "SubProductName", "LinkType",
                 "LinkTypeStr", "CreatedTime", "ResourceId", "MasterInfo")
INSTANCE_INTS = ("Port", "Ram")
BACKUP_STRS = ("BackupId", "BackupMode", "BackupType", "Desc", "StartTime", "EndTime",
               "InstanceId", "Status")


def redis_cli(host, port, *args):
    p = subprocess.run([REDIS_CLI, "-h", host, "-p", str(port), "-a", PASSWORD,
                        "--no-auth-warning"] + list(args),
                       capture_output=True, text=True, timeout=30)
    return p.returncode, p.stdout.strip(), p.stderr.strip()


def describe_sdk(uuid_):
    return SDK_GET.call_json("DescribeDBInstances", {"InstanceUuid": uuid_})


def describe_ref(uuid_):
    return ref_get("DescribeDBInstances", {"InstanceUuid": uuid_})[1]


def running(r):
    d = r.get("Data") if isinstance(r, dict) else None
    return isinstance(d, list) and len(d) == 1 and d[0].get("Status") == "RUNNING"


def gone(r):
    return isinstance(r, dict) and r.get("Code") == "Success" and r.get("Data") == []


# ---- the walk ------------------------------------------------------------------------------

def discover():
    """DescribeRegins and DescribeAvailableDBConfig; returns (region, 1 GB PaasGoodsId)."""
    r = SDK_GET.call_json("DescribeRegins", {})
    regions = r.get("Data") if isinstance(r, dict) else None
    bad = [typed(x, strs=("CityId", "CityName", "RegionId", "RegionName", "SiteName"),
                 ints=("IsSaling",)) for x in regions or []]
    selling = [x["RegionId"] for x in regions or [] if x.get("IsSaling") == 1 and x.get("RegionId")]
    ok = success(r, list) and regions and not any(bad) and selling
    if not check("SDK GET DescribeRegins: Data a list of regions (IsSaling int), one for sale",
                 ok, brief(r)):
        return None
    region = PREFERRED_REGION if PREFERRED_REGION in selling else selling[0]
    note("site %s" % region)

    status, r2, url = ref_get("DescribeRegins")
    check("2026 reference GET DescribeRegins: 200, the same RegionIds",
          status == 200 and success(r2, list)
          and [x.get("RegionId") for x in r2["Data"]] == [x.get("RegionId") for x in regions],
          "%s %s" % (status, brief(r2)))

    r = SDK_GET.call_json("DescribeAvailableDBConfig", {"RegionId": region})
    d = r.get("Data") if isinstance(r, dict) else None
    specs, problems = [], []
    if isinstance(d, dict):
        for prod in d.get("Products") or []:
            problems += typed(prod, strs=("Version",), lists=("Architectures",))
            for arch in prod.get("Architectures") or []:
                problems += typed(arch, strs=("ArchitectureName", "SubProductName"),
                                  ints=("ArchitectureType",),
                                  lists=("ComputeRoles", "EnginesType", "NetworkLinks"))
                for role in arch.get("ComputeRoles") or []:
                    problems += typed(role, strs=("ComputeName",), ints=("ComputeType",))
                    std = role.get("Standards") or {}
                    problems += typed(std, lists=("AttachDisk", "CpuRam"))
                    for cr in std.get("CpuRam") or []:
                        problems += typed(cr, strs=("Name",), ints=("CPU", "PaasGoodsId", "RAM"))
                        specs.append((arch.get("ArchitectureType"), cr))
    # The master-replica architecture (1) sells 1 GB; the cluster (2) is listed beside it.
    one_gb = [s for kind, s in specs if kind == 1 and s.get("RAM") == 1]
    if not check("SDK GET DescribeAvailableDBConfig lists the cluster architecture",
                 any(kind == 2 for kind, _ in specs), brief(r)):
        return None
    ok = success(r, dict) and d.get("RegionId") == region and d.get("ProductName") == "redis" \
        and isinstance(d.get("Products"), list) and not problems and len(one_gb) == 1 \
        and one_gb[0].get("PaasGoodsId") == 70001
    if not check("SDK GET DescribeAvailableDBConfig: typed specs, 1 GB is PaasGoodsId 70001",
                 ok, "%s %s" % (problems, brief(r))):
        return None

    status, r2, url = ref_get("DescribeAvailableDBConfig", {"RegionId": region})
    check("2026 reference GET DescribeAvailableDBConfig (RegionId sent twice, after Signature "
          "too): 200, the same Data",
          status == 200 and success(r2, dict) and r2["Data"] == d
          and url.count("RegionId=") == 2 and url.index("Signature=") < url.rindex("RegionId="),
          "%s %s %s" % (status, url, brief(r2)))
    return region, one_gb[0]["PaasGoodsId"]


def create(region, goods):
    """SDK POST CreateDBInstance (instance A) and a Go-style POST (instance B); both uuids."""
    body = {"RegionId": region, "VdcId": VDC_ID, "BasePipeId": PIPE_ID,
            "InstanceName": INSTANCE_NAME, "PaasGoodsId": goods, "Password": PASSWORD}
    del SENT[:]
    r = SDK_POST.call_json("CreateDBInstance", body)
    wire = SENT[-1] if SENT else None
    if wire is not None:
        q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(wire.url).query))
        sent_body = json.loads(wire.body) if wire.body else None
        check("SDK POST wire form: /redis/, business parameters signed in the query and sent "
              "again as the JSON body", wire.method == "POST"
              and urllib.parse.urlsplit(wire.url).path == "/redis/"
              and q.get("InstanceName") == INSTANCE_NAME and q.get("PaasGoodsId") == str(goods)
              and q.get("SignatureMethod") == "HMAC-SHA1" and bool(q.get("Signature"))
              and sent_body == body
              and wire.headers.get("Content-Type") == "application/json",
              "%s %s %r" % (wire.method, wire.url, wire.body))
    ids = (r.get("Data") or {}).get("InstancesUuid") if success(r, dict) else None
    ok = isinstance(ids, list) and len(ids) == 1 and isinstance(ids[0], str) and ids[0] \
        and bool(r.get("TaskId"))
    if not check("SDK POST CreateDBInstance: Data.InstancesUuid a list of one str, TaskId a "
                 "non-empty str", ok, brief(r)):
        return None, None
    a = ids[0]

    go_body = {"RegionId": region, "VdcId": VDC_ID, "BasePipeId": PIPE_ID,
               "InstanceName": GO_INSTANCE_NAME, "PaasGoodsId": goods, "Password": PASSWORD,
               "Amount": None, "TestGroupId": None, "SubjectId": None, "ServicePort": None}
    status, r = go_style_post("CreateDBInstance", go_body)
    ids = (r.get("Data") or {}).get("InstancesUuid") if success(r, dict) else None
    ok = status == 200 and isinstance(ids, list) and len(ids) == 1 and ids[0] != a \
        and bool(r.get("TaskId"))
    b = ids[0] if ok else None
    check("Go-style POST CreateDBInstance (no Content-Type, nulls for unset optionals): one "
          "more instance", ok, "%s %s" % (status, brief(r)))
    return a, b


def wait_running(a, b, region):
    """Both instances RUNNING; checks A's fields; returns (IP, Port) of A or None."""
    r = poll("DescribeDBInstances A", lambda: describe_sdk(a), running)
    if not check("SDK GET DescribeDBInstances(InstanceUuid) reaches RUNNING", r is not None,
                 "instance %s" % a):
        return None
    i = r["Data"][0]
    bad = typed(i, strs=INSTANCE_STRS, ints=INSTANCE_INTS,
                lists=("Tags",))
    ok = success(r, list) and not bad and i["InstanceUuid"] == a \
        and i["InstanceName"] == INSTANCE_NAME and i["Ram"] == 1024 and i["RegionId"] == region \
        and i["VdcId"] == VDC_ID and i["MasterInfo"] == "" and i["IP"] and 0 < i["Port"] < 65536 \
        and TIME_RE.match(i["CreatedTime"]) and i["StatusStr"]
    check("DescribeDBInstances fields: typed (Port/Ram int, MasterInfo str), Ram 1024, name, "
          "site, VdcId", ok, "%s %s" % (bad, brief(i)))

    if b:
        r = poll("DescribeDBInstances B", lambda: describe_ref(b), running)
        check("2026 reference GET DescribeDBInstances: the Go-style instance reaches RUNNING",
              r is not None and r["Data"][0].get("InstanceName") == GO_INSTANCE_NAME,
              brief(r))

    r = SDK_GET.call_json("DescribeDBInstances", {})
    listed = [x.get("InstanceUuid") for x in r.get("Data") or []]
    check("SDK GET DescribeDBInstances without filters lists the new instances",
          success(r, list) and a in listed and (b is None or b in listed), brief(r))

    status, r, _ = ref_get("DescribeDBInstances", {"IP": i["IP"], "InstanceName": INSTANCE_NAME})
    check("2026 reference GET DescribeDBInstances filtered by IP and a UTF-8 InstanceName",
          status == 200 and success(r, list)
          and [x.get("InstanceUuid") for x in r["Data"]] == [a], "%s %s" % (status, brief(r)))
    return i["IP"], i["Port"]


def cross_dialect(a):
    """The instance through the Tencent API 3.0 SDK (same account, same crsd)."""
    try:
        from tencentcloud.common import credential
        from tencentcloud.common.profile.client_profile import ClientProfile as TcClientProfile
        from tencentcloud.common.profile.http_profile import HttpProfile as TcHttpProfile
        from tencentcloud.redis.v20180412 import models, redis_client
    except ImportError as e:
        note("cross-dialect check skipped: %r" % e)
        return
    hp = TcHttpProfile(endpoint=HOST, certification=CA, reqTimeout=HTTP_TIMEOUT_SECS)
    c = redis_client.RedisClient(credential.Credential(SECRET_ID, SECRET_KEY), "ap-guangzhou",
                                 TcClientProfile(httpProfile=hp))
    req = models.DescribeInstancesRequest()
    req.InstanceId = a
    req.Limit = 10
    r = c.DescribeInstances(req)
    found = r.InstanceSet or []
    check("cross-dialect: tencentcloud-sdk-python DescribeInstances sees the instance (Size 1024, "
          "name)", r.TotalCount == 1 and found[0].InstanceId == a and found[0].Size == 1024.0
          and found[0].InstanceName == INSTANCE_NAME, r.to_json_string()[:400])


def data_and_backups(a, ip, port):
    rc, out, err = redis_cli(ip, port, "SET", REDIS_KEY, REDIS_VALUE)
    check("redis-cli -h IP -p Port -a PASSWORD SET", rc == 0 and out == "OK",
          "exit %d %r %r" % (rc, out, err))
    rc, out, err = redis_cli(ip, port, "GET", REDIS_KEY)
    check("redis-cli GET reads it back", rc == 0 and out == REDIS_VALUE,
          "exit %d %r %r" % (rc, out, err))

    desc = "co sdk 备份 & x=1"
    r = SDK_POST.call_json("CreateBackup", {"InstanceUuid": a, "Desc": desc})
    if not check("SDK POST CreateBackup: Data {}, TaskId a non-empty str",
                 success(r, dict) and r["Data"] == {} and bool(r.get("TaskId")), brief(r)):
        return

    def mine(r):
        return [x for x in (r or {}).get("Data") or [] if x.get("Desc") == desc]

    r = poll("DescribeBackups", lambda: SDK_GET.call_json("DescribeBackups", {"InstanceUuid": a}),
             lambda r: [x.get("Status") for x in mine(r)] == ["finished"])
    if not check("SDK GET DescribeBackups: the backup reaches \"finished\"", r is not None,
                 "instance %s" % a):
        return
    b = mine(r)[0]
    bad = typed(b, strs=BACKUP_STRS, ints=("BackupSize",))
    ok = success(r, list) and not bad and b["BackupSize"] > 0 and b["BackupMode"] == "manual" \
        and b["BackupType"] == "full-backup" and b["InstanceId"] == a \
        and TIME_RE.match(b["StartTime"]) and TIME_RE.match(b["EndTime"])
    check("DescribeBackups fields: typed (BackupSize int), manual, full-backup, InstanceId",
          ok, "%s %s" % (bad, brief(b)))
    backup_id = b["BackupId"]

    r = SDK_GET.call_json("DownloadBackup", {"InstanceUuid": a, "BackupId": backup_id})
    d = r.get("Data") if isinstance(r, dict) else None
    bad = typed(d or {}, strs=BACKUP_STRS + ("ShardId", "BackupDownloadUrl",
                                             "BackupIntranetDownloadUrl"), ints=("BackupSize",))
    ok = success(r, dict) and not bad and d["BackupId"] == backup_id \
        and d["BackupSize"] == b["BackupSize"] and d["ShardId"] == "" \
        and d["BackupDownloadUrl"].startswith("https://")
    if not check("SDK GET DownloadBackup: BackupDownloadUrl (https), BackupIntranetDownloadUrl, "
                 "BackupSize", ok, "%s %s" % (bad, brief(r))):
        return
    url = d["BackupDownloadUrl"]
    for which in ("BackupDownloadUrl", "BackupIntranetDownloadUrl"):
        try:
            res = requests.get(d[which], timeout=HTTP_TIMEOUT_SECS)
            body = res.content
            check("download %s: 200, starts with REDIS, BackupSize bytes, holds the key" % which,
                  res.status_code == 200 and body.startswith(b"REDIS")
                  and len(body) == d["BackupSize"] and REDIS_KEY.encode() in body,
                  "%s %r len %d BackupSize %s" % (res.status_code, body[:16], len(body),
                                                  d["BackupSize"]))
        except requests.RequestException as e:
            check("download %s" % which, False, repr(e))

    # A second backup through the old reference code, the body exactly as the doc's example.
    status, r = old_post("CreateBackup", {"InstanceUuid": a, "BackupType": "full-backup",
                                          "Desc": "测试Redis备份"})
    check("old reference POST CreateBackup (get_signature + requests.post(url, json=body))",
          status == 200 and success(r, dict) and bool(r.get("TaskId")),
          "%s %s" % (status, brief(r)))
    r = poll("DescribeBackups (2)",
             lambda: ref_get("DescribeBackups", {"InstanceUuid": a})[1],
             lambda r: sorted(x.get("Status") for x in r.get("Data") or []) == ["finished"] * 2)
    second = [x for x in (r or {}).get("Data") or [] if x.get("Desc") == "测试Redis备份"]
    if check("2026 reference GET DescribeBackups: both backups \"finished\"",
             r is not None and len(second) == 1, brief(r)):
        status, r = old_post("DeleteBackup", {"InstanceUuid": a, "BackupId": second[0]["BackupId"]})
        check("old reference POST DeleteBackup: Success",
              status == 200 and success(r, dict), "%s %s" % (status, brief(r)))
        r = SDK_GET.call_json("DescribeBackups", {"InstanceUuid": a})
        check("DeleteBackup is synchronous: DescribeBackups no longer lists it",
              success(r, list) and [x.get("BackupId") for x in r["Data"]] == [backup_id],
              brief(r))

    r = SDK_POST.call_json("DeleteBackup", {"InstanceUuid": a, "BackupId": backup_id})
    check("SDK POST DeleteBackup: Success", success(r, dict), brief(r))
    r = SDK_GET.call_json("DescribeBackups", {"InstanceUuid": a})
    check("DescribeBackups is then an empty list", success(r, list) and r["Data"] == [], brief(r))
    try:
        res = requests.get(url, timeout=HTTP_TIMEOUT_SECS)
        check("the deleted backup's download URL no longer serves it",
              res.status_code != 200 and not res.content.startswith(b"REDIS"),
              "%s %r" % (res.status_code, res.content[:100]))
    except requests.RequestException as e:
        check("the deleted backup's download URL no longer serves it", False, repr(e))


def refusals(a, region):
    status, r, _ = ref_get("DescribeRegins", sk=SK + "x")
    check("wrong secret (2026 reference): 401 SignatureDoesNotMatch",
          status == 401 and r.get("Code") == "SignatureDoesNotMatch", "%s %s" % (status, brief(r)))
    e, r = sdk_error(lambda: sdk("GET", secret_key=SK + "x").call_json("DescribeRegins", {}))
    check("wrong secret (SDK): raises, the body says SignatureDoesNotMatch",
          e is not None and (r or {}).get("Code") == "SignatureDoesNotMatch", repr(e))
    status, r = old_post("DeleteBackup", {"InstanceUuid": a, "BackupId": "nosuch"},
                         secret=SK + "x")
    check("wrong secret (old reference, POST): 401 SignatureDoesNotMatch",
          status == 401 and r.get("Code") == "SignatureDoesNotMatch", "%s %s" % (status, brief(r)))
    status, r, _ = ref_get("DescribeRegins", ak="AKIDnoSuchKey000000000000000000000000")
    check("unknown AccessKeyId: 401 InvalidAccessKeyId",
          status == 401 and r.get("Code") == "InvalidAccessKeyId", "%s %s" % (status, brief(r)))

    status, r = old_post("CreateDBInstance", {"RegionId": region, "VdcId": VDC_ID,
                                              "BasePipeId": PIPE_ID, "InstanceName": "co-nopw",
                                              "PaasGoodsId": 70001})
    check("CreateDBInstance without Password: 400 ArgMissing naming Password",
          status == 400 and r.get("Code") == "ArgMissing" and "Password" in r.get("Message", ""),
          "%s %s" % (status, brief(r)))
    status, r = go_style_post("CreateDBInstance", {
        "RegionId": region, "VdcId": VDC_ID, "BasePipeId": PIPE_ID, "InstanceName": None,
        "PaasGoodsId": 70001, "Password": PASSWORD, "Amount": None})
    check("CreateDBInstance with InstanceName null (Go-style): 400 ArgMissing",
          status == 400 and r.get("Code") == "ArgMissing", "%s %s" % (status, brief(r)))

    status, r, _ = ref_get("DescribeBackups", {"InstanceUuid": "redis-nosuch00"})
    check("unknown InstanceUuid (DescribeBackups): 404 ResourceNotFound",
          status == 404 and r.get("Code") == "ResourceNotFound", "%s %s" % (status, brief(r)))
    e, r = sdk_error(lambda: SDK_POST.call_json("DeleteDBInstance",
                                                {"InstanceUuid": "redis-nosuch00"}))
    check("unknown InstanceUuid (SDK POST DeleteDBInstance): raises, the body says "
          "ResourceNotFound", e is not None and (r or {}).get("Code") == "ResourceNotFound",
          repr(e))
    status, r, _ = ref_get("DownloadBackup", {"InstanceUuid": a, "BackupId": "nosuch"})
    check("unknown BackupId (DownloadBackup): 404 ResourceNotFound",
          status == 404 and r.get("Code") == "ResourceNotFound", "%s %s" % (status, brief(r)))


def delete(a, b):
    r = SDK_POST.call_json("DeleteDBInstance", {"InstanceUuid": a})
    check("SDK POST DeleteDBInstance: Data {}, TaskId a non-empty str",
          success(r, dict) and r["Data"] == {} and bool(r.get("TaskId")), brief(r))
    if b:
        status, r = old_post("DeleteDBInstance", {"InstanceUuid": b})
        check("old reference POST DeleteDBInstance (the Go-style instance)",
              status == 200 and success(r, dict) and bool(r.get("TaskId")),
              "%s %s" % (status, brief(r)))
    r = poll("DescribeDBInstances A gone", lambda: describe_sdk(a), gone)
    check("SDK GET DescribeDBInstances(InstanceUuid) becomes an empty list", r is not None,
          "instance %s" % a)
    if b:
        r = poll("DescribeDBInstances B gone", lambda: describe_ref(b), gone)
        check("the Go-style instance is gone too", r is not None, "instance %s" % b)


def main():
    global SDK_GET, SDK_POST
    SDK_GET = sdk("GET")
    SDK_POST = sdk("POST")

    # Without certification the SDK verifies against certifi alone, whatever the environment
    # says (requests ignores REQUESTS_CA_BUNDLE when given an explicit verify path).
    # Recorded, not counted.
    e, _ = sdk_error(lambda: sdk("GET", certification=None).call_json("DescribeRegins", {}))
    note("SDK without HttpProfile(certification=CA), REQUESTS_CA_BUNDLE=%s: %s"
         % (os.environ.get("REQUESTS_CA_BUNDLE"),
            "CERTIFICATE_VERIFY_FAILED" if e and "CERTIFICATE_VERIFY_FAILED" in str(e)
            else repr(e)[:160]))

    found = discover()
    if not found:
        return
    region, goods = found
    a, b = create(region, goods)
    if not a:
        return
    try:
        addr = wait_running(a, b, region)
        if addr:
            cross_dialect(a)
            data_and_backups(a, *addr)
        refusals(a, region)
    finally:
        delete(a, b)


if __name__ == "__main__":
    started = time.time()
    try:
        main()
    except Exception:
        traceback.print_exc()
        check("the walk ran to its end without an exception", False)
    finally:
        if RESULT_FILE:
            with open(RESULT_FILE, "w") as f:
                json.dump({"passed": passed, "failed": failed}, f)
    print("co_sdk: %d passed, %d failed (%.1fs)" % (passed, failed, time.time() - started))
    sys.exit(1 if failed else 0)
