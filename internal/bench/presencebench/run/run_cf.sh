#!/bin/bash
set -u
RP=16391
redis-server --port $RP --bind 127.0.0.1 --save "" --appendonly no --dir /tmp --loglevel warning >/dev/null 2>&1 &
rpid=$!
for i in $(seq 50); do redis-cli -p $RP ping >/dev/null 2>&1 && break; sleep 0.1; done
/tmp/centrifugo -c $(dirname $0)/cf.json >/tmp/presencebench-cf.log 2>&1 &
spid=$!
for i in $(seq 100); do curl -s -o /dev/null http://127.0.0.1:18100/ && break; sleep 0.1; done
${PRESENCEBENCH:-/tmp/p/presencebench} -target centrifugo -addr 127.0.0.1:18100 -redis 127.0.0.1:$RP -pid $spid -n 10000 -watchers ${W:-10} -steady 30s -channel room:bench
echo "load $(cat /proc/loadavg)"
kill $spid; wait $spid 2>/dev/null
kill $rpid; wait $rpid 2>/dev/null
