"""Hand-tuned Adam / SGD from a random init on the LFT sinusoid tasks (the reference the learned fine-tuners
are compared with in the issue-3 note): MSE on 100 query points after 5, 20 and 100 steps, 200 test tasks.

    python scripts/adam_baseline_sinusoid.py
"""
import torch, math
from innerloop.tasks import SinusoidTasks
from innerloop.models import MLP
torch.set_num_threads(1)
t = SinusoidTasks(shots=10, query=10, frequency=(1.0,1.0))
xs, ys, xq, yq = t.eval_set(200, 2020, 100)
for opt_name in ["sgd","adam"]:
  for lr in ([0.003,0.01,0.03,0.1] if opt_name=="adam" else [0.01,0.03,0.1]):
    res={5:[],20:[],100:[]}
    torch.manual_seed(0)
    for i in range(200):
        m = MLP(1,[40,40],1)
        o = (torch.optim.Adam if opt_name=="adam" else torch.optim.SGD)(m.parameters(), lr=lr)
        for s in range(1,101):
            o.zero_grad(); loss=((m(xs[i])-ys[i])**2).mean(); loss.backward(); o.step()
            if s in res:
                with torch.no_grad(): res[s].append(float(((m(xq[i])-yq[i])**2).mean()))
    print(opt_name, lr, {k: round(sum(v)/len(v),3) for k,v in res.items()}, flush=True)
