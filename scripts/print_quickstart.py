"""Printed by `make run`: a demo client, and requests that work exactly as printed."""

from __future__ import annotations

import os

host = os.environ.get("HOST", "127.0.0.1")
port = os.environ.get("PORT", "8000")
base = f"http://{host}:{port}"
fhir = f"{base}/v2/demo-clinic/fhir/R4"

print(
    f"""
MediKIT scheduling server (demo data loaded, DEBUG on, SQLite)

  FHIR base:   {fhir}
  Admin:       {base}/admin/   staff login: staff / medikit-demo
  API client:  demo-client / demo-secret

Get a token and search free slots for the coming week:

  TOKEN=$(curl -s -u demo-client:demo-secret -d grant_type=client_credentials \\
      {base}/oauth/token \\
      | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
  curl -s -H "Authorization: Bearer $TOKEN" "{fhir}/Slot?status=free&_count=5"

Capabilities (no token needed):

  curl -s {fhir}/metadata
"""
)
