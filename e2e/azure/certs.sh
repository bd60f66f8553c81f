#!/usr/bin/env bash
# Makes a throwaway CA and a server certificate for 127.0.0.1 and localhost, signed by it,
# for e2e/azure/fake.py (azure-core and extdns send bearer tokens over TLS only).
#   e2e/azure/certs.sh DIR   -> DIR/ca.pem DIR/server.pem DIR/server.key
# Nothing here is secret: the keys live as long as the test's scratch dir.
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
DIR=$1
mkdir -p "$DIR"
command -v openssl >/dev/null || { echo "openssl is missing (apt-get install openssl)" >&2; exit 1; }
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=extdns fake Azure CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -keyout "$DIR/ca.key" -out "$DIR/ca.pem" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout "$DIR/server.key" -out "$DIR/server.csr" 2>/dev/null
printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
    "extendedKeyUsage=serverAuth" "subjectAltName=IP:127.0.0.1,DNS:localhost" >"$DIR/server.ext"
openssl x509 -req -in "$DIR/server.csr" -CA "$DIR/ca.pem" -CAkey "$DIR/ca.key" -CAcreateserial -days 2 \
    -extfile "$DIR/server.ext" -out "$DIR/server.pem" 2>/dev/null
