"""DKIM verification (and signing) by a verifier we did not write: Debian's python3-dkim (dkimpy), plus
python3-nacl for ed25519. Run with /usr/bin/python3 (testing.md). Not named dns.py: that would shadow dnspython.

stdin: JSON {"message": base64, "records": {"sel._domainkey.example.com": "v=DKIM1; k=rsa; p=..."}}
stdout: JSON {"signatures": [{"d": ..., "s": ..., "a": ..., "ok": bool, "error": str|null}, ...]}
With "sign": {"selector", "domain", "key" (PKCS#1 PEM), "headers": [...]} it prints {"message": base64} instead:
the message signed by dkimpy, rsa-sha256 relaxed/relaxed (what a client such as Acelle sends pre-signed).
"""
import base64
import json
import sys

import dkim
import dkim.util


def main():
    request = json.load(sys.stdin)
    message = base64.b64decode(request["message"])
    if "sign" in request:
        s = request["sign"]
        header = dkim.sign(message, s["selector"].encode(), s["domain"].encode(), s["key"].encode(),
                           canonicalize=(b"relaxed", b"relaxed"), include_headers=[h.encode() for h in s["headers"]],
                           linesep=b"\r\n")
        json.dump({"message": base64.b64encode(header + message).decode()}, sys.stdout)
        return
    records = {name.lower().rstrip("."): value for name, value in request["records"].items()}

    def dnsfunc(name, timeout=5, **_):
        key = (name.decode() if isinstance(name, bytes) else name).lower().rstrip(".")
        value = records.get(key)
        return value.encode() if value is not None else None

    checker = dkim.DKIM(message)
    results = []
    headers = [value for (name, value) in checker.headers if name.lower() == b"dkim-signature"]
    for idx, value in enumerate(headers):
        tags = dkim.util.parse_tag_value(value.replace(b"\r\n", b""))
        entry = {"d": tags.get(b"d", b"").decode(), "s": tags.get(b"s", b"").decode(), "a": tags.get(b"a", b"").decode(),
                 "h": tags.get(b"h", b"").decode().replace(" ", ""), "ok": False, "error": None}
        try:
            entry["ok"] = bool(dkim.DKIM(message).verify(idx=idx, dnsfunc=dnsfunc))
        except Exception as error:  # dkimpy raises on a body-hash mismatch, a bad record, a bad tag
            entry["error"] = "%s: %s" % (type(error).__name__, error)
        results.append(entry)
    json.dump({"signatures": results}, sys.stdout)


main()
