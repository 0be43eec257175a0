"""L2F (Learning to Forget, Baik et al. CVPR 2020): task-conditioned attenuation of theta_0.

Spec section 5. With N inner-loop tensors and the support-set gradient g at the meta-learned
theta_0 (step 0), the task embedding is the layer-wise mean e_l = mean(g_l), and

    gamma = sigmoid(W2 relu(W1 e + b1) + b2) in (0, 1)^N,    theta_{0,l} <- gamma_l * theta_{0,l}

after which the usual inner loop runs from the attenuated weights. ``detach_embedding`` (default,
L2F's own code: ``create_graph=False``) makes e a constant; ``False`` backpropagates through it, as
the copy in the ALFA repository does. Linear layers keep PyTorch's default initialisation, as in the
authors' code, so gamma starts near 0.5.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from innerloop.params import Params


class Attenuator(nn.Module):
    """``forward(params, grads) -> attenuated params`` for the tensors named in ``names``."""

    def __init__(self, names: list[str], detach_embedding: bool = True):
        super().__init__()
        self.names = list(names)
        n = len(self.names)
        self.net = nn.Sequential(nn.Linear(n, n), nn.ReLU(), nn.Linear(n, n), nn.Sigmoid())
        self.detach_embedding = detach_embedding

    def gamma(self, grads: Params) -> Tensor:
        e = torch.stack([grads[k].mean() for k in self.names])
        if self.detach_embedding:
            e = e.detach()
        return self.net(e)

    def forward(self, params: Params, grads: Params) -> tuple[Params, Tensor]:
        g = self.gamma(grads)
        out = dict(params)
        for i, k in enumerate(self.names):
            out[k] = params[k] * g[i]
        return out, g
