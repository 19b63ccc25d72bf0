"""schemathesis hook for scripts/schemathesis.sh: the API key of the run.

The run uses an `admin` key, which lists every key and may revoke or
rotate any, its own included: a fixed key would leave the rest of the run
answering 401. So a key is minted here with the `keygate` command
(`$KEYGATE_CLI`, on the quickstart's database) every second. (Not on a
401: schemathesis would then retry the `ignored_auth` check's requests
without a key, meant to be refused, with a fresh key.) It is set in the
document's own security scheme (the `X-API-Key` header), so that check can
send requests without it and with a wrong one.
"""

import itertools
import json
import os
import subprocess

import schemathesis

_minted = itertools.count(1)


@schemathesis.auth(refresh_interval=1, retry_on=[])
class MintedKey:
    def get(self, case, context):
        n = next(_minted)
        out = subprocess.run(
            [
                os.environ["KEYGATE_CLI"],
                "--json",
                "keys",
                "create",
                # One owner per key: the keys-per-owner cap never binds.
                "--owner",
                f"service:schemathesis-{n}",
                "--name",
                "schemathesis",
                "--scopes",
                "admin",
                "--rate-limit",
                "100000/s",
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        return json.loads(out.stdout)["key"]

    def set(self, case, data, context):
        case.headers = case.headers or {}
        case.headers["X-API-Key"] = data
