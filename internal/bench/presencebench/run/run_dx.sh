#!/bin/bash
set -u
RP=16390
redis-server --port $RP --bind 127.0.0.1 --save "" --appendonly no --dir /tmp --loglevel warning >/dev/null 2>&1 &
rpid=$!
for i in $(seq 50); do redis-cli -p $RP ping >/dev/null 2>&1 && break; sleep 0.1; done
${DUPLEX_BIN:-/tmp/p/duplex} serve --listen 127.0.0.1:18090 --log-level warn --presence 'room:*' --engine redis://127.0.0.1:$RP/0 >/tmp/presencebench-dx.log 2>&1 &
spid=$!
for i in $(seq 100); do curl -s -o /dev/null http://127.0.0.1:18090/healthz && break; sleep 0.1; done
r0=$(awk '{print $14+$15}' /proc/$rpid/stat)
${PRESENCEBENCH:-/tmp/p/presencebench} -target duplex -addr 127.0.0.1:18090 -redis 127.0.0.1:$RP -pid $spid -n 10000 -watchers ${W:-10} -steady 30s
r1=$(awk '{print $14+$15}' /proc/$rpid/stat)
echo "redis CPU ticks total: $((r1-r0)); load $(cat /proc/loadavg)"
curl -s "http://127.0.0.1:18090/v1/channels/room:bench/presence?stats=1"; echo
kill $spid; wait $spid 2>/dev/null
kill $rpid; wait $rpid 2>/dev/null
