"""ILCACM's training run (spec ilcacm §4): data, model, optimiser and schedule, the epoch plans of stage 1 and
stage 2 (their steps are models/ilcacm/steps.py), the stage-1 paragraphs that fix the event counts, checkpoints
through utils/engine.fit, and the final evaluation. train_script/train_ilcacm.py is its command line."""
import json
import math
import time

import torch

from models.ilcacm.evaluation import data_files, evaluate_model, load_split
from models.ilcacm.factory import build_model, build_tokenizer, model_arch
from models.ilcacm.inference import generate_paragraphs
from models.ilcacm.losses import check_loss_groups
from models.ilcacm.steps import KIND, STAGE1_FILE, Stage1Error, cosine_schedule, grouped, stage1_checkpoint, \
    train_step, uses_diversity
from models.ilcacm.text_decoder import tokenizer_from_state
from utils.annotations import load_annotations
from utils.checkpoint import save_checkpoint, seed_everything
from utils.distributed import cleanup, init_distributed, make_loader, set_epoch, wrap_ddp
from utils.engine import EpochPlan, TrainState, fit
from utils.features import open_features, select_videos
from utils.ilcacm_data import ILCACMDataset, make_collate
from utils.run import Run, resolve_device
from utils.text import ilcacm_normalize


def training_loader(dataset, collate_fn, args):
    """Micro-batches of --batch-size / --grad-accum videos (shared by the processes); the epoch's order is padded
    with its first videos to whole global batches, so the last one is full (accelerate's even batches, spec §4.4)
    and splits into --loss-groups groups like the others."""
    return make_loader(dataset, args.batch_size // args.grad_accum, shuffle=True, drop_last=False,
                       collate_fn=collate_fn, seed=args.seed, num_workers=args.num_workers, pad_to=args.batch_size)


def train(args):
    """Train (and unless --skip-eval evaluate) one ILCACM run from parsed, resolved flags."""
    if args.batch_size % args.grad_accum:
        raise Stage1Error(f'--batch-size {args.batch_size} must be divisible by --grad-accum {args.grad_accum}')
    check_loss_groups(args.batch_size, args.loss_groups)
    rank, _ = init_distributed(args.device)
    seed_everything(args.seed + rank)
    device = resolve_device(args.device)
    with Run(args, kind=KIND) as run:
        train_path, val_path, references, feature_path = data_files(args)
        train_ann, features = load_annotations(train_path), open_features(feature_path)
        train_vids = select_videos(train_ann, features, args.missing_features, str(train_path))
        run.record_skipped(train_path, train_ann, features)
        # the run's own last checkpoint (--resume) or another run's stage 1 (--stage1-from)
        state = run.resume_state() or (stage1_checkpoint(args.stage1_from, run.config, args.cap_epochs)
                                       if args.stage1_from else None)
        tokenizer = tokenizer_from_state(state['tokenizer']) if state else build_tokenizer(
            vars(args), [s for v in train_vids for s in ilcacm_normalize(train_ann[v]['sentences'], args.max_captions)])
        model = build_model(vars(args), tokenizer, features.dim).to(device)
        dataset = ILCACMDataset(train_ann, features, tokenizer, train_vids, args.max_frames, args.max_captions,
                                args.max_tokens)
        loader = training_loader(dataset, make_collate(tokenizer), args)
        updates = math.ceil(len(loader) / args.grad_accum)
        optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=tuple(args.betas), eps=1e-8,
                                      weight_decay=args.weight_decay)
        scheduler = cosine_schedule(optimizer, updates * args.epochs, args.warmup)
        ddp = wrap_ddp(model, device, find_unused_parameters=True)  # stage 1 leaves the mask generator unused
        val = load_split(val_path, features, tokenizer, args)
        run.record_skipped(val_path, val.annotations, features)
        kept = {'paragraphs': None if state is None else state.get('paragraphs')}

        def stage1_paragraphs():
            start = time.perf_counter()
            kept['paragraphs'] = generate_paragraphs(model, val, device, args)
            if run.is_main:
                run.start()
                (run.predictions_dir / 'stage1_paragraphs.json').write_text(json.dumps(kept['paragraphs'], indent=1))
                print(f'stage-1 paragraphs of {len(val)} videos in {time.perf_counter() - start:.1f} s', flush=True)

        def plan(epoch):
            stage = 'caption' if epoch < args.cap_epochs else 'localize'
            if kept['paragraphs'] is None and epoch >= args.cap_epochs:
                stage1_paragraphs()  # resumed after the end of stage 1
            set_epoch(loader, epoch)
            ddp.train()
            end = stage1_paragraphs if kept['paragraphs'] is None and epoch + 1 >= args.cap_epochs else None
            div = uses_diversity(args, epoch)

            def step(group):
                return train_step(ddp, model, group, optimizer, scheduler, stage, args, device, div)
            return EpochPlan(grouped(loader, args.grad_accum), step,
                             f'epoch {epoch} ({stage})', updates, finite=('loss', 'div'), label=f' ({stage})', end=end)

        def extra(epoch):
            return {'tokenizer': tokenizer.state(), 'decoder_arch': model_arch(model), 'feature_dim': features.dim,
                    'paragraphs': kept['paragraphs']}

        def on_saved(epoch, checkpoint):  # kept whatever --keep-checkpoints: see --stage1-from
            if epoch == args.cap_epochs - 1 and run.is_main:
                save_checkpoint(run.checkpoints_dir / STAGE1_FILE, checkpoint)
        fit(run, TrainState({'ilcacm': model}, {'adamw': optimizer}, {'cosine': scheduler}), args.epochs, plan,
            config=run.config, resume=state, extra=extra, on_saved=on_saved)
        if not args.skip_eval:
            evaluate_model(model, val, kept['paragraphs'], references, run.dir, device, args)
    cleanup()
