#!/usr/bin/env bash
# Registers an executor and sends one heartbeat by hand, with nothing but
# openssl, curl and jq — the walk-through of docs/protocol.md, runnable.
#
#   docs/examples/curl-walkthrough.sh https://127.0.0.1:8443 DATA_DIR/ca.pem "$TOKEN" [WORKDIR]
#
# It prints the heartbeat response on stdout. The test suite runs this script.
set -euo pipefail
URL=${1:?controller URL}
CA=${2:?CA bundle file}
TOKEN=${3:?enrollment token}
WORK=${4:-$(mktemp -d)}
umask 077
cd "$WORK"

# 1. A key that never leaves this machine, and a CSR for it (its subject is ignored).
openssl genpkey -algorithm ed25519 -out key.pem
openssl req -new -key key.pem -subj "/CN=hand-made" -out csr.pem

# 2. Register with the one-time enrollment token (no client certificate yet).
jq -n --arg t "$TOKEN" --rawfile csr csr.pem '{enrollment_token: $t, csr_pem: $csr, name: "curl"}' > register.json
curl -sS --fail-with-body --cacert "$CA" -H 'content-type: application/json' \
  --data-binary @register.json "$URL/v1/executors/register" > registered.json
ID=$(jq -r .executor_id registered.json)
JWT=$(jq -r .jwt registered.json)
jq -r .certificate_pem registered.json > cert.pem
# hmac_key is base64url; openssl wants hex.
HMAC_HEX=$(jq -r .hmac_key registered.json | tr '_-' '/+' | awk '{ while (length($0) % 4) $0 = $0 "="; print }' | openssl base64 -d -A | od -An -tx1 | tr -d ' \n')

# 3. A heartbeat: mTLS with the new certificate, the JWT, and the HMAC signature.
BODY='{"status":"ready","running":0,"capacity":1,"leases":[]}'
PATH_=/v1/executors/$ID/heartbeat
TS=$(( $(date +%s) * 1000 ))
NONCE=$(openssl rand -hex 16)
BODY_SHA=$(printf '%s' "$BODY" | openssl dgst -sha256 -r | cut -d' ' -f1)
printf 'TETHER-HMAC-SHA256\nPOST\n%s\n%s\n%s\n%s\n%s' "$PATH_" "$ID" "$TS" "$NONCE" "$BODY_SHA" > string-to-sign.txt
SIG=$(openssl dgst -sha256 -mac HMAC -macopt "hexkey:$HMAC_HEX" -r string-to-sign.txt | cut -d' ' -f1)

curl -sS --fail-with-body --cacert "$CA" --cert cert.pem --key key.pem \
  -H 'content-type: application/json' \
  -H "authorization: Bearer $JWT" \
  -H "x-tether-timestamp: $TS" \
  -H "x-tether-nonce: $NONCE" \
  -H "x-tether-signature: v1=$SIG" \
  --data-binary "$BODY" "$URL$PATH_"
echo
