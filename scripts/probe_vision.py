#!/usr/bin/env python3
"""Linear probe: do a world model's 9 merged image tokens encode each cell's colour and shape?

    grlhf data generate --out /tmp/world --n 1000
    .venv/bin/python scripts/probe_vision.py /tmp/world NAME=MODEL_DIR [NAME=MODEL_DIR ...]

For each model (a directory grlhf saved: `grlhf sft --out D` writes D/init and D/model), the
vision tower (run by transformers) encodes 1,000 scenes of `prompts_train`; a linear classifier
over each cell's token (plus the cell's index) is fit on 800 scenes and scored on 200: the
colour and the shape of occupied cells (chance 1/6), and whether a cell is occupied. The numbers
in docs/world.md came from this script.
"""
import json, sys, torch
from PIL import Image
from transformers import Qwen2VLForConditionalGeneration, Qwen2VLImageProcessor
torch.manual_seed(0); torch.set_num_threads(2)
root = sys.argv[1]
recs = [json.loads(l) for l in open(f'{root}/prompts_train.jsonl')][:1000]
ROWS = {'top':0,'middle':1,'bottom':2}; COLS={'left':0,'center':1,'right':2}
COL = ['red','green','blue','yellow','purple','orange']; SHP=['circle','square','triangle','diamond','cross','flame']
def labels(scene):
    c = [0]*9; s=[0]*9
    for o in scene['objects']:
        k = ROWS[o['cell']['row']]*3 + COLS[o['cell']['column']]
        c[k] = 1+COL.index(o['colour']); s[k] = 1+SHP.index(o['shape'])
    return c, s
def feats(model_dir):
    proc = Qwen2VLImageProcessor.from_pretrained(model_dir)
    model = Qwen2VLForConditionalGeneration.from_pretrained(model_dir, dtype=torch.float32).eval()
    out=[]
    with torch.no_grad():
        for i in range(0, len(recs), 50):
            imgs=[Image.open(f"{root}/{r['image']}").convert('RGB') for r in recs[i:i+50]]
            b = proc(images=imgs, return_tensors='pt')
            e = model.model.visual(b['pixel_values'], grid_thw=b['image_grid_thw'])
            e = getattr(e, 'pooler_output', e)
            if isinstance(e, (tuple, list)): e = e[0]
            out.append(e.reshape(len(imgs), -1, e.shape[-1]))
    return torch.cat(out)
def probe(X, y, classes):
    # X: [N, 9, d] -> per-cell examples; one linear classifier over cell token (+ cell one-hot)
    N = X.shape[0]; tr = int(N*0.8)
    cell = torch.eye(9).expand(N,9,9)
    Z = torch.cat([X, cell], -1)
    Z = (Z - Z[:tr].mean((0,1))) / (Z[:tr].std((0,1)) + 1e-6)
    Y = torch.tensor(y)
    W = torch.zeros(Z.shape[-1], classes, requires_grad=True); b = torch.zeros(classes, requires_grad=True)
    opt = torch.optim.Adam([W,b], lr=0.05)
    for _ in range(400):
        opt.zero_grad(); l = torch.nn.functional.cross_entropy((Z[:tr]@W+b).reshape(-1,classes), Y[:tr].reshape(-1), ) + 1e-4*(W**2).sum(); l.backward(); opt.step()
    with torch.no_grad():
        pred = (Z[tr:]@W+b).argmax(-1); yt = Y[tr:]
        occ = yt>0
        return (pred[occ]==yt[occ]).float().mean().item(), ((pred>0)==(yt>0)).float().mean().item()
c, s = zip(*[labels(r['world']['scene']) for r in recs])
for name, d in [a.split('=', 1) for a in sys.argv[2:]]:
    X = feats(d)
    ca, occ = probe(X, list(c), 7); sa, _ = probe(X, list(s), 7)
    print(f"{name:<22} tokens/image {X.shape[1]}  occupied-cell colour acc {ca:.3f}  shape acc {sa:.3f}  occupancy acc {occ:.3f}  (chance colour 0.17, shape 0.17)")
