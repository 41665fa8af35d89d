#!/usr/bin/env bash
# Checks the shipped systemd units: `systemd-analyze verify` must be clean and
# `systemd-analyze security --offline=true` must rate exposure <= 2.0.
# The units name /usr/bin/passeur; the check points them at the built binary
# (verify wants the executables to exist). Works without systemd as PID 1.
# Usage: scripts/check-units.sh PATH-TO-passeur
set -euo pipefail
cd "$(dirname "$0")/.."
bin="$(realpath "$1")"
command -v systemd-analyze >/dev/null || { echo "check-units: systemd-analyze missing (apt-get install systemd)" >&2; exit 69; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
status=0
for unit in systemd/passeur.service systemd/passeur@.service; do
  name="$(basename "$unit")"
  sed "s#/usr/bin/passeur#$bin#g" "$unit" > "$work/$name"
  target="$name"
  [[ "$name" == *@.service ]] && { target="${name/@/@example}"; ln -s "$name" "$work/$target"; }
  if ! out="$(cd "$work" && systemd-analyze verify --man=no "$target" 2>&1)" || [ -n "$out" ]; then
    echo "check-units: systemd-analyze verify $name:" >&2; echo "$out" >&2; status=1
  fi
  score="$(cd "$work" && systemd-analyze security --offline=true "$target" 2>/dev/null | sed -n 's/.*Overall exposure level for .*: \([0-9.]*\).*/\1/p')"
  if [ -z "$score" ] || ! awk -v s="$score" 'BEGIN { exit !(s <= 2.0) }'; then
    echo "check-units: $name exposure ${score:-unknown} (must be <= 2.0)" >&2; status=1
  else
    echo "check-units: $name verify clean, exposure $score"
  fi
done
exit $status
