#!/usr/bin/env bash
# A generated login for compose.yaml: writes .env beside it (or the file named) with APP_USER1 (studio unless
# set) and a random APP_PASS1, readable by its owner only, and prints the login once. Never replaces a login.
#   scripts/compose-env.sh [FILE]
set -euo pipefail
env_file=${1:-"$(dirname "$0")/../.env"}
if [[ -e $env_file ]]; then
    echo "$env_file exists: its login stays" >&2
    exit 0
fi
user=${APP_USER1:-studio}
password=$(python3 -c 'import secrets; print(secrets.token_urlsafe(18))')
(umask 077 && printf 'APP_USER1=%s\nAPP_PASS1=%s\n' "$user" "$password" >"$env_file")
echo "SAM Studio login: $user / $password (kept in $env_file)"
