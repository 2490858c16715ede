#!/usr/bin/env python3
"""Time for N confluent-kafka consumers subscribing together to be stable (every
member holds partitions, 12 in all). Usage: group_stabilise.py BOOTSTRAP N ROUNDS"""
import sys, threading, time, uuid
from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient, NewTopic
b=sys.argv[1]; n=int(sys.argv[2]); rounds=int(sys.argv[3])
a=AdminClient({'bootstrap.servers':b})
try: a.create_topics([NewTopic('stab',12,1)])['stab'].result(10)
except Exception: pass
res=[]
for r in range(rounds):
    g='stab-'+uuid.uuid4().hex
    cs=[Consumer({'bootstrap.servers':b,'group.id':g,'enable.auto.commit':False}) for _ in range(n)]
    got=[0]*n; stop=threading.Event(); lock=threading.Lock()
    def run(i):
        c=cs[i]
        def on_assign(c, ps):
            with lock: got[i]=len(ps)
        def on_revoke(c, ps):
            with lock: got[i]=0
        c.subscribe(['stab'], on_assign=on_assign, on_revoke=on_revoke)
        while not stop.is_set():
            c.poll(0.01)
    t0=time.monotonic()
    ts=[threading.Thread(target=run,args=(i,)) for i in range(n)]
    [t.start() for t in ts]
    while True:
        with lock:
            if sum(got)==12 and all(got): break
        if time.monotonic()-t0>60: break
        time.sleep(0.002)
    took=time.monotonic()-t0
    stop.set(); [t.join() for t in ts]; [c.close() for c in cs]
    res.append(took*1000)
res.sort()
print(f"confluent-kafka {n} members: min {res[0]:.0f} ms, median {res[len(res)//2]:.0f} ms, max {res[-1]:.0f} ms", flush=True)
