#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Summaries, targets, plots and the markdown report of "make bench".

bench/run-bench.py calls finalize(), plots() and markdown(); run alone,
this file re-renders the report of a result file:

    bench/report.py bench/results/bench-<date>-<mode>.json [--doc PATH]
"""

import argparse
import json
import os
import statistics
import sys

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
sys.dont_write_bytecode = True     # no bench/__pycache__ in the tree
sys.path.insert(0, BENCH)
import ivshbench as ib  # noqa: E402

LAT_KEYS = ('p50', 'p90', 'p99', 'p99_9', 'max', 'mean')
LAT_NAMES = {'p50': 'p50', 'p90': 'p90', 'p99': 'p99', 'p99_9': 'p99.9',
             'max': 'max', 'mean': 'mean'}
GATED_LAT = ('p50', 'p90', 'p99', 'p99_9', 'max')
KINDS = {'vm_vm': 'VM<->VM', 'host_vm': 'host<->VM',
         'host_host': 'host<->host'}
PAIRS = [('a', 'c'), ('b', "c'")]
FLOOR_OF = {'a': 'f1', 'b': 'f1u', 'c': 'f1', "c'": 'f1u'}
HOST_FLOOR_OF = {'a': 'f1h', 'c': 'f1h'}
PASS, MISS, NA = 'PASS', 'MISS', 'n/a'


# --- aggregation ------------------------------------------------------------

def spread(values):
    v = [x for x in values if x is not None]
    if not v:
        return None
    return {'median': round(statistics.median(v), 3), 'min': min(v),
            'max': max(v), 'n': len(v)}


def finalize(res):
    """Merge the runs: medians and spreads per (accel, config), pooled
    histograms, ratios and targets.  Drops the per-run histograms."""
    agg = {}
    for r in res['runs']:
        a = agg.setdefault(r['accel'], {}).setdefault(r['tag'], {
            'runs': 0, 'ok': 0, 'errors': [], 'raw': []})
        a['runs'] += 1
        if r.get('status') == 'skipped':
            a['skipped'] = r.get('reason')
            continue
        if r.get('status') != 'ok':
            a['errors'].append(r.get('error'))
            continue
        a['ok'] += 1
        a['raw'].append(r)
        for kind in ('vm_vm', 'host_vm'):
            h = r.pop(kind + '_hist', None)
            if h is not None:
                pool = a.setdefault(kind + '_pooled_hist',
                                    [0] * ib.IVG_HIST_BUCKETS)
                for i, n in enumerate(h):
                    pool[i] += n
    for accel, tags in agg.items():
        for tag, a in tags.items():
            raw = a.pop('raw')
            for kind in ('vm_vm', 'host_vm', 'host_host'):
                rs = [r[kind] for r in raw if kind in r]
                if not rs:
                    continue
                a[kind] = {k: spread([x.get(k) for x in rs])
                           for k in LAT_KEYS + ('rt_per_s',)}
                a[kind]['count_per_run'] = rs[0].get('count')
                pool = a.pop(kind + '_pooled_hist', None)
                if pool:
                    a[kind]['pooled'] = ib.latency_summary(pool)
                    a[kind]['pooled_hist'] = ib.hist_sparse(pool)
            bl = [r['blast'] for r in raw if r.get('blast')]
            if bl:
                a['blast'] = {k: spread([x.get(k) for x in bl]) for k in
                              ('doorbells_per_s', 'interrupts_per_s',
                               'interrupts_per_doorbell')}
            ex = [r['exits'] for r in raw if r.get('exits')]
            if ex:
                a['exits'] = {k: spread([x.get(k) for x in ex])
                              for k in ex[0] if k.endswith('_per_doorbell')}
            cp = {}
            for r in raw:
                for c in r.get('copy', []):
                    cp.setdefault(c['bytes'], []).append(c)
            if cp:
                a['copy'] = []
                for size in sorted(cp):
                    cs = cp[size]
                    ent = {'bytes': size}
                    for k in ('ram_to_bar2_mb_s', 'bar2_to_ram_mb_s',
                              'ram_to_ram_mb_s'):
                        ent[k] = spread([c[k] for c in cs])
                    for k in ('ram_to_bar2', 'bar2_to_ram'):
                        ent[k + '_vs_ram'] = spread([
                            c[k + '_mb_s'] / c['ram_to_ram_mb_s']
                            for c in cs if c['ram_to_ram_mb_s']])
                    a['copy'].append(ent)
            cpu = [r['qemu_cpu'] for r in raw if r.get('qemu_cpu')]
            if cpu:
                a['qemu_cpu'] = {vm: {k: spread([c[vm][k] for c in cpu])
                                      for k in cpu[0][vm]} for vm in cpu[0]}
            for k in ('user_exits_per_rt', 'kvm_module', 'halt_poll_ns',
                      'guest', 'pinned'):
                if raw and k in raw[0]:
                    a[k] = raw[0][k]
    res['aggregate'] = agg
    res['join_summary'] = join_summary(res.get('joins', []))
    res['ratios'] = ratios(res)
    res['targets'] = targets(res)
    return res


def med(agg, accel, tag, kind, key):
    try:
        return agg[accel][tag][kind][key]['median']
    except (KeyError, TypeError):
        return None


def join_summary(joins):
    out = {}
    for j in joins:
        if 'n' not in j:
            continue
        d = out.setdefault(j['accel'], {}).setdefault(j['device'], {})
        e = d.setdefault(str(j['n']), {'runs': 0, 'ok': 0, 'status': [],
                                       'ready': [], 'qmp': [], 'peers': [],
                                       'pss': [], 'rss': [], 'anon': [],
                                       'held': [],
                                       'expected': None})
        e['runs'] += 1
        e['status'].append(j['status'] if j['status'] != 'failed' else
                           'failed: ' + j.get('error', '?'))
        if j['status'] in ('ok', 'partial'):
            e['ok'] += j['status'] == 'ok'
            e['ready'].append(j['ready_ms'])
            e['qmp'].append(j['qmp_ms'])
            e['peers'].append(j['peers_notified_ms'])
            e['pss'].append(j['pss_kb'])
            e['rss'].append(j['rss_kb'])
            e['anon'].append(j.get('pss_anon_kb'))
            e['held'].append(j['eventfds_held'])
            e['expected'] = j['eventfds_expected']
            if j.get('note'):
                e['note'] = j['note']
    for accel, devs in out.items():
        for dev, ns in devs.items():
            for n, e in ns.items():
                for k in ('ready', 'qmp', 'peers', 'pss', 'rss', 'anon',
                          'held'):
                    e[k] = spread(e[k])
            pts = sorted((int(n), e['pss']['median']) for n, e in ns.items()
                         if e['pss'] and e['ok'])
            rss = sorted((int(n), e['rss']['median']) for n, e in ns.items()
                         if e['rss'] and e['ok'])
            anon = sorted((int(n), e['anon']['median']) for n, e in ns.items()
                          if e['anon'] and e['ok'])
            ns['_pss_kb_per_peer'] = slope(pts)
            ns['_rss_kb_per_peer'] = slope(rss)
            ns['_anon_kb_per_peer'] = slope(anon)
            bad = sorted(int(n) for n, e in ns.items()
                         if not n.startswith('_') and e['ok'] < e['runs'])
            good = sorted(int(n) for n, e in ns.items()
                          if not n.startswith('_') and e['ok'] == e['runs'])
            below = [n for n in good if not bad or n < bad[0]]
            ns['_works_up_to'] = below[-1] if below else None
            ns['_fails_at'] = bad[0] if bad else None
    return out


def slope(pts):
    """Least-squares slope of (x, y) points"""
    if len(pts) < 2:
        return None
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    den = sum((p[0] - mx) ** 2 for p in pts)
    return round(sum((p[0] - mx) * (p[1] - my) for p in pts) / den, 1) \
        if den else None


def ratio(x, y):
    return round(x / y, 3) if x is not None and y else None


def ratios(res):
    agg = res['aggregate']
    out = {'ours_upstream': [], 'ours_floor': []}
    for accel in res['accelerators']:
        for ours, up in PAIRS:
            for kind in ('vm_vm', 'host_vm'):
                row = {'pair': '%s/%s' % (ours, up), 'accel': accel,
                       'kind': kind}
                for k in GATED_LAT + ('mean', 'rt_per_s'):
                    row[k] = ratio(med(agg, accel, ours, kind, k),
                                   med(agg, accel, up, kind, k))
                out['ours_upstream'].append(row)
        for ours in ('a', 'b', 'c', "c'", 'd'):
            for kind, floor in (('vm_vm', FLOOR_OF.get(ours)),
                                ('host_vm', HOST_FLOOR_OF.get(ours)),
                                ('vm_vm', 'f2p')):
                if not floor:
                    continue
                faccel = 'host' if floor.startswith('f2') else 'kvm'
                fkind = 'host_host' if floor.startswith('f2') else kind
                row = {'pair': '%s/%s' % (ours, floor), 'accel': accel,
                       'kind': kind}
                for k in ('p50', 'p99'):
                    row[k] = ratio(med(agg, accel, ours, kind, k),
                                   med(agg, faccel, floor, fkind, k))
                if floor.startswith('f1') and accel != 'kvm':
                    row['note'] = 'floor f1 runs under KVM only'
                    row['p50'] = row['p99'] = None
                out['ours_floor'].append(row)
    return out


# --- targets ----------------------------------------------------------------

def no_kvm_reason(res):
    return 'n/a (KVM unusable here: %s)' % res['kvm']['reason']


def compare(agg, accel, ours, up, kind, key, lower_better=True):
    """(ratio, verdict) of medians; PASS also within the measured spread"""
    try:
        o = agg[accel][ours][kind][key]
        u = agg[accel][up][kind][key]
    except (KeyError, TypeError):
        return None, None
    if o is None or u is None or not u['median']:
        return None, None
    r = o['median'] / u['median']
    if (r <= 1.0) if lower_better else (r >= 1.0):
        return r, PASS
    # the spreads overlap: not a measurable difference
    if lower_better and o['min'] <= u['max']:
        return r, PASS + ' (within spread)'
    if not lower_better and o['max'] >= u['min']:
        return r, PASS + ' (within spread)'
    return r, MISS


def group_verdict(results):
    v = [x[2] for x in results if x[2]]
    if MISS in v:
        return MISS
    if any('within' in x for x in v):
        return PASS + ' (within spread)'
    return PASS


def worst(results, lower_better=True):
    """The entry of a group least favourable to ours"""
    results = [x for x in results if x[1] is not None]
    if not results:
        return None
    return (max if lower_better else min)(results, key=lambda x: x[1])


def targets(res):
    agg = res['aggregate']
    t = []

    def why_na(accel, *tags):
        ran = [x for x in tags if x in agg.get(accel, {})]
        return 'n/a (runs failed)' if len(ran) == len(tags) else \
            'n/a (not run)'

    def add(tid, what, accel, value, verdict):
        t.append({'id': tid, 'target': what, 'accel': accel,
                  'value': value, 'verdict': verdict})

    # T1: fast path against the floor (KVM)
    if 'kvm' not in res['accelerators']:
        add('T1', 'KVM (a) VM<->VM p50 <= 1.10 x floor f1', 'kvm', '',
            no_kvm_reason(res))
        add('T1', 'KVM (a) VM<->VM p99 <= 1.5 x floor f1', 'kvm', '',
            no_kvm_reason(res))
    else:
        for key, lim in (('p50', 1.10), ('p99', 1.5)):
            a = med(agg, 'kvm', 'a', 'vm_vm', key)
            f = med(agg, 'kvm', 'f1', 'vm_vm', key)
            if a is None or f is None:
                why = agg.get('kvm', {}).get('f1', {}).get('skipped') or \
                    'a or f1 failed'
                add('T1', 'KVM (a) VM<->VM %s <= %.2f x floor f1' % (key, lim),
                    'kvm', '', 'n/a (%s)' % why)
            else:
                add('T1', 'KVM (a) VM<->VM %s <= %.2f x floor f1' % (key, lim),
                    'kvm', '%.1f vs %.1f us = %.2fx' % (a, f, a / f),
                    PASS if a <= lim * f else MISS)

    # T2: ours/upstream <= 1.00 on every latency, >= 1.00 on every rate
    for accel in res['accelerators']:
        for ours, up in PAIRS:
            for kind in ('vm_vm', 'host_vm'):
                rs = []
                for k in GATED_LAT:
                    r, v = compare(agg, accel, ours, up, kind, k)
                    rs.append((LAT_NAMES[k], r, v))
                w = worst(rs)
                if w is None:
                    add('T2', '%s/%s %s latency <= 1.00' % (ours, up,
                                                             KINDS[kind]),
                        accel, '', why_na(accel, ours, up))
                    continue
                bad = [x for x in rs if x[2] == MISS]
                add('T2', '%s/%s %s latency <= 1.00 (p50..max)' % (
                    ours, up, KINDS[kind]), accel,
                    'worst %s %.2fx' % (w[0], w[1]) + (
                        '; over: ' + ', '.join('%s %.2fx' % (x[0], x[1])
                                               for x in bad) if bad else ''),
                    group_verdict(rs))
            rs = []
            for kind, key, name in (('vm_vm', 'rt_per_s', 'VM RT/s'),
                                    ('host_vm', 'rt_per_s', 'host RT/s'),
                                    ('blast', 'doorbells_per_s',
                                     'doorbells/s'),
                                    ('blast', 'interrupts_per_s',
                                     'interrupts/s')):
                r, v = compare(agg, accel, ours, up, kind, key,
                               lower_better=False)
                rs.append((name, r, v))
            for o_c, u_c in zip(agg.get(accel, {}).get(ours, {}).get(
                    'copy', []), agg.get(accel, {}).get(up, {}).get(
                        'copy', [])):
                for k in ('ram_to_bar2_mb_s', 'bar2_to_ram_mb_s'):
                    o, u = o_c[k], u_c[k]
                    if o and u and u['median']:
                        r = o['median'] / u['median']
                        v = PASS if r >= 1 else (
                            PASS + ' (within spread)' if o['max'] >= u['min']
                            else MISS)
                        rs.append(('copy %s %s' % (
                            size_name(o_c['bytes']),
                            'RAM->BAR2' if k.startswith('ram') else
                            'BAR2->RAM'), r, v))
            w = worst(rs, lower_better=False)
            if w is None:
                add('T2', '%s/%s rates >= 1.00' % (ours, up), accel, '',
                    why_na(accel, ours, up))
            else:
                bad = [x for x in rs if x[2] == MISS]
                add('T2', '%s/%s rates >= 1.00 (RT/s, doorbells/s, '
                    'interrupts/s, copy)' % (ours, up), accel,
                    'worst %s %.2fx' % (w[0], w[1]) + (
                        '; under: ' + ', '.join('%s %.2fx' % (x[0], x[1])
                                                for x in bad) if bad else ''),
                    group_verdict(rs))

    # T3: zero exits to QEMU per doorbell with ioeventfd=on (KVM)
    if 'kvm' not in res['accelerators']:
        add('T3', '(a) ioeventfd=on: 0 exits to QEMU per doorbell (< 0.01)',
            'kvm', '', no_kvm_reason(res))
    else:
        e = agg.get('kvm', {}).get('a', {}).get('exits')
        if not e:
            add('T3', '(a) ioeventfd=on: 0 exits to QEMU per doorbell',
                'kvm', '', 'n/a (no query-stats)')
        else:
            v = e['mmio_exits_per_doorbell']['median']
            add('T3', '(a) ioeventfd=on: 0 exits to QEMU per doorbell '
                '(mmio_exits < 0.01)', 'kvm', '%.4f' % v,
                PASS if v < 0.01 else MISS)
    for accel in res['accelerators']:
        if accel != 'kvm':
            add('T3', '(a) exits to QEMU per doorbell', accel, '',
                'n/a (%s has no KVM exit statistics)' % accel.upper())

    # T4: BAR2 copy >= 90 % of RAM -> RAM
    for accel in res['accelerators']:
        for tag in ('a',):
            cp = agg.get(accel, {}).get(tag, {}).get('copy')
            if not cp:
                add('T4', '(%s) BAR2 copy >= 90%% of RAM->RAM' % tag, accel,
                    '', why_na(accel, tag))
                continue
            def lowest(cp):
                lows = []
                for c in cp:
                    for k in ('ram_to_bar2_vs_ram', 'bar2_to_ram_vs_ram'):
                        if c[k]:
                            lows.append((c[k]['median'],
                                         size_name(c['bytes']),
                                         k.split('_vs')[0].replace('_', ' ')))
                return min(lows) if lows else None
            lo = lowest(cp)
            up = lowest(agg.get(accel, {}).get('c', {}).get('copy', []))
            add('T4', '(%s) BAR2 copy >= 90%% of RAM->RAM, every size' % tag,
                accel, 'lowest %.0f%% (%s %s)%s' % (
                    100 * lo[0], lo[1], lo[2],
                    '; upstream (c): %.0f%% (%s %s)' % (
                        100 * up[0], up[1], up[2]) if up else ''),
                PASS if lo[0] >= 0.9 else MISS)

    # T5: join cost
    js = res.get('join_summary', {})
    for accel in res['accelerators']:
        d = js.get(accel, {})
        ours, up = d.get('ours', {}), d.get('upstream', {})
        ns = sorted(int(n) for n in ours if not n.startswith('_'))
        if not ns:
            add('T5', 'join: 256th peer cheaper than upstream', accel, '',
                'n/a (join not run)')
            continue
        top = max(ns)
        label = 'join: %s peer cheaper than upstream' % ordinal(top)
        if top != 256:
            label += ' (256 not run in %s mode)' % res['mode']
        o = ours.get(str(top), {})
        u = up.get(str(top), {})
        if not o.get('ready') or o['ok'] < o['runs']:
            add('T5', label, accel, 'ours: %s' % '; '.join(o.get('status',
                                                                 [])), MISS)
        elif not u.get('ready') or u['ok'] < u['runs']:
            add('T5', label, accel, '%.0f ms; upstream: %s' % (
                o['ready']['median'], '; '.join(u.get('status', []))), PASS)
        else:
            om, um = o['ready']['median'], u['ready']['median']
            add('T5', label, accel, '%.0f vs %.0f ms = %.2fx' % (
                om, um, om / um), PASS if om < um else MISS)
        # growth at most linear
        pts = [(n, ours[str(n)]['ready']) for n in ns
               if ours[str(n)].get('ready') and
               ours[str(n)]['ok'] == ours[str(n)]['runs']]
        pts = [p for p in pts if p[0] > 1] if len(pts) > 3 else pts
        if len(pts) < 3:
            add('T5', 'join: ours grows at most linearly with N', accel, '',
                'n/a (fewer than 3 working N)')
        else:
            (n1, t1), (n2, t2), (n3, t3) = pts[-3:]
            s_lo = (t2['median'] - t1['median']) / (n2 - n1)
            s_hi = (t3['median'] - t2['median']) / (n3 - n2)
            noise = max(50.0, t3['max'] - t3['min'], t2['max'] - t2['min'])
            ok = s_hi <= 1.5 * max(s_lo, 0) + noise / (n3 - n2)
            add('T5', 'join: ours grows at most linearly with N', accel,
                '%.2f ms/peer (N %d-%d) vs %.2f ms/peer (N %d-%d)' % (
                    s_hi, n2, n3, s_lo, n1, n2), PASS if ok else MISS)
    return t


def ordinal(n):
    return '%d%s' % (n, 'th' if 10 <= n % 100 <= 20 else
                     {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th'))


def size_name(n):
    if n >= 1 << 20 and n % (1 << 20) == 0:
        return '%dM' % (n >> 20)
    if n >= 1 << 10 and n % (1 << 10) == 0:
        return '%dK' % (n >> 10)
    return str(n)


# --- plots ------------------------------------------------------------------

COLORS = {'a': '#1f77b4', 'b': '#ff7f0e', 'c': '#2ca02c', "c'": '#d62728',
          'd': '#9467bd'}
STYLES = {'kvm': '-', 'tcg': '--'}


def plots(res, outdir, stem):
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
    except ImportError:
        sys.stderr.write('bench: python3-matplotlib missing: no plots\n')
        return []
    out = []
    agg = res['aggregate']

    fig, axes = plt.subplots(1, 2, figsize=(13, 5.2))
    for ax, kind in zip(axes, ('vm_vm', 'host_vm')):
        any_line = False
        for accel in res['accelerators']:
            for tag in ('a', 'b', 'c', "c'", 'd'):
                e = agg.get(accel, {}).get(tag, {}).get(kind)
                if not e or 'pooled_hist' not in e:
                    continue
                h = ib.hist_dense(e['pooled_hist'])
                total = sum(h)
                xs, ys, acc = [], [], 0
                for b, n in enumerate(h):
                    if not n:
                        continue
                    acc += n
                    xs.append((ib.hist_low(b) + ib.hist_width(b)) / 1e3)
                    ys.append(max(1.0 - acc / total, 0.5 / total))
                ax.step(xs, ys, where='post', color=COLORS[tag],
                        linestyle=STYLES.get(accel, ':'),
                        label='%s %s: %s (p50 %.0f us)' % (
                            tag, accel, res['configs'].get(tag, tag),
                            e['pooled']['p50']))
                any_line = True
        if kind == 'vm_vm':
            for tag, accel, kk, col in (('f1', 'kvm', 'vm_vm', 'black'),
                                        ('f2p', 'host', 'host_host', 'grey'),
                                        ('f2b', 'host', 'host_host',
                                         'silver')):
                p50 = med(agg, accel, tag, kk, 'p50')
                if p50:
                    ax.axvline(p50, color=col, linestyle=':',
                               label='floor %s p50 %.1f us' % (tag, p50))
        else:
            p50 = med(agg, 'kvm', 'f1h', 'host_vm', 'p50')
            if p50:
                ax.axvline(p50, color='black', linestyle=':',
                           label='floor f1h p50 %.1f us' % p50)
        ax.set_xscale('log')
        ax.set_yscale('log')
        ax.set_ylim(1e-6 if res['params']['count'] >= 100000 else 1e-4, 1.5)
        ax.set_xlabel('round-trip time (us)')
        ax.set_ylabel('fraction of round trips slower (1 - CDF)')
        ax.set_title('%s round trip, %s' % (KINDS[kind], ', '.join(
            res['accelerators'])))
        ax.grid(True, which='both', alpha=0.3)
        if any_line:
            ax.legend(fontsize=7, loc='lower left')
    fig.suptitle('ivshmem doorbell round trips (%s, %s mode, %s)' % (
        res['machine'].get('cpu_model'), res['mode'], res['started'][:10]),
        fontsize=10)
    fig.tight_layout()
    p = os.path.join(outdir, stem + '-latency.png')
    fig.savefig(p, dpi=80)
    plt.close(fig)
    out.append(p)

    js = res.get('join_summary', {})
    if js:
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
        for accel, devs in js.items():
            for dev, ns in devs.items():
                if dev not in ('ours', 'upstream'):
                    continue
                pts = sorted((int(n), e) for n, e in ns.items()
                             if not n.startswith('_') and e.get('ready'))
                if not pts:
                    continue
                col = COLORS['a'] if dev == 'ours' else COLORS['c']
                lab = '%s %s' % ('ours' if dev == 'ours' else
                                 'QEMU 10.0', accel)
                xs = [n for n, _ in pts]
                ys = [e['ready']['median'] for _, e in pts]
                lo = [e['ready']['median'] - e['ready']['min'] for _, e in pts]
                hi = [e['ready']['max'] - e['ready']['median'] for _, e in pts]
                axes[0].errorbar(xs, ys, yerr=[lo, hi], marker='o', color=col,
                                 linestyle=STYLES.get(accel, ':'), capsize=3,
                                 label=lab)
                for (n, e) in pts:
                    if e['ok'] < e['runs']:
                        axes[0].annotate('partial', (n, e['ready']['median']),
                                         fontsize=7)
                mp = [(n, e['rss']['median'] / 1024) for n, e in pts
                      if e.get('rss')]
                if mp:
                    per = ns.get('_rss_kb_per_peer')
                    axes[1].plot([x for x, _ in mp], [y for _, y in mp],
                                 marker='o', color=col,
                                 linestyle=STYLES.get(accel, ':'),
                                 label=lab + (' (%.0f kB/peer)' % per
                                              if per is not None else ''))
        ticks = sorted(set(int(n) for devs in js.values()
                           for ns in devs.values() for n in ns
                           if not n.startswith('_')))
        for ax in axes:
            ax.set_xticks(ticks)
            ax.set_xlim(0, max(ticks) * 1.05 if ticks else 1)
        axes[0].set_ylim(bottom=0)
        axes[0].set_xlabel('N (the new QEMU is the N-th peer; %d vectors)'
                           % res['params']['join_vectors'])
        axes[0].set_ylabel('QEMU start -> joined and ready (ms)')
        axes[0].set_title('Join cost of the N-th peer')
        axes[1].set_xlabel('N')
        axes[1].set_ylabel('QEMU RSS after joining (MiB)')
        axes[1].set_title('QEMU memory vs N')
        for ax in axes:
            ax.grid(True, which='both', alpha=0.3)
            ax.legend(fontsize=8)
        fig.tight_layout()
        p = os.path.join(outdir, stem + '-join.png')
        fig.savefig(p, dpi=80)
        plt.close(fig)
        out.append(p)
    return out


# --- markdown ---------------------------------------------------------------

def f1(x, nd=1):
    if x is None:
        return '-'
    if isinstance(x, (int, float)) and abs(x) >= 1e4:
        return '{:,.0f}'.format(x)
    return ('%.' + str(nd) + 'f') % x


def md_table(head, rows):
    out = ['| ' + ' | '.join(head) + ' |',
           '|' + '|'.join('---' for _ in head) + '|']
    for r in rows:
        out.append('| ' + ' | '.join(str(c) for c in r) + ' |')
    return '\n'.join(out)


def may_write_doc(path, mode):
    """None if the report may go to path; else why not"""
    if mode == 'full' or not os.path.exists(path):
        return None
    with open(path) as f:
        head = f.read(4096)
    if 'Mode: **full**' in head:
        return 'it holds a full run; a quick run does not replace it ' \
            '(use --doc to choose another file)'
    return None


KVM_GAP_TEXT = '''\
With ioeventfd and irqfd no device code runs per doorbell: the counts
below show 0 MMIO exits, one KVM exit per VM per round trip, and QEMU's
other threads woken about once per thousand round trips (timers), for
our device and QEMU 10.0's alike.  What separates a device run from the
raw-KVM floor (kvm-floor: the same doorbell -> ioeventfd = peer irqfd ->
MSI path, with a VMM that has no device model at all) is therefore
outside the device:

- **The guest's own instructions.**  On a paravirtual kvm-pvm host a
  real-mode guest runs entirely in KVM's instruction emulator (the
  `insn_emulation` count), so every guest instruction on the path costs
  about as much as a small exit.  The issue's 47.5 us (3.3x) came from a
  test guest whose handler and loop took 89 emulated instructions per
  round trip against the floor's 43.  The real-mode guest now has a
  handler per role (the responder echoes and rings back at its 7th
  instruction; the initiator's counts and EOIs, 6 instructions) and
  looks at the pong before it halts: 65 emulated instructions per round
  trip unpinned (76 pinned, where the initiator always halts), and
  1.06-1.13x the floor of the same pinning (unpinned, medians of
  interleaved runs; 1.06 in a quieter run than the table's).  On
  VMX/SVM hosts the guest runs natively and this term disappears.
- **Pinning and CPU contention.**  kvm-floor pins its two vCPUs by
  default.  On an idle 2-CPU machine pinning each QEMU's vCPU to its own
  CPU halves the round trip (25-26 us against 47.5 in the issue); on a
  machine where other work holds the CPUs the pinned runs become bimodal
  (a vCPU waits for its CPU while the other one is free) and unpinned
  runs are faster and steadier.  Compare device and floor under the
  same pinning, in the same run.
- **Halt and wake-up.**  Every round trip is two HLT exits and two
  wake-ups (the receiver idles in HLT, as a real guest does); halt
  polling (module default 200 us, read-only here; QEMU 10.0 has no
  per-VM setting) catches some wake-ups.  `-overcommit cpu-pm=on` (HLT
  without an exit) changes nothing on kvm-pvm, where HLT is emulated.
- **Noise.**  Other work on a 2-CPU machine moves a single run's p50 by
  up to 3x (see the spreads); only ratios of interleaved runs mean
  something there, and ours against QEMU 10.0's device stays within
  0.94-1.01 (median of per-repetition ratios) under every setting.
'''


def markdown(res, doc_dir=None):
    agg = res['aggregate']
    m = res['machine']
    p = res['params']
    accels = res['accelerators']
    L = []
    w = L.append

    def rel(path):
        full = os.path.join(ROOT, path)
        return os.path.relpath(full, doc_dir) if doc_dir else path

    w('# ivshmem benchmarks')
    w('')
    w('Generated by `make bench%s` (`bench/run-bench.py`); do not edit, '
      'run it again.' % (' QUICK=1' if res['mode'] == 'quick' else ''))
    w('')
    w('Date: **%s** (%d s). Mode: **%s**. Accelerator%s: **%s**%s.' % (
        res['started'].replace('T', ' '), res['duration_s'], res['mode'],
        's' if len(accels) > 1 else '', ', '.join(accels),
        '' if res['kvm']['usable'] else
        ' (KVM skipped: %s)' % res['kvm']['reason']))
    w('')
    w(md_table(['', ''], [
        ['Machine', '%s (family/model %s), %s CPUs, %s GiB, Debian %s, '
         'kernel %s' % (m.get('cpu_model'), m.get('cpu_family_model'),
                        m.get('cpus_online'), m.get('mem_gib'),
                        m.get('debian'), m.get('kernel'))],
        ['KVM', ('usable (%s)%s' % (
            ', '.join(m.get('kvm_modules') or []) or 'module unknown',
            '; ' + res['kvm']['reason'] if res['kvm'].get('reason') not in
            (None, '', 'probe passed') else '')) if
         res['kvm']['usable'] else 'unusable: %s; every device number is '
         'TCG' % res['kvm']['reason']],
        ['QEMU (ours)', '`%s`: %s' % (res['qemu']['ours']['path'],
                                      res['qemu']['ours']['version'])],
        ['QEMU (upstream)', '`%s`: %s' % (res['qemu']['upstream']['path'],
                                          res['qemu']['upstream']['version'])],
        ['Server (all configs)', '`%s`: %s' % (res['server']['path'],
                                               res['server']['note'])],
        ['Guest', '`%s` (-bios), q35, %d MiB, 1 vCPU; vectors=1, shared '
         'memory %d MiB; CPU: KVM `%s`, TCG %s' % (
             res['guest'], p['guest_ram_mb'], p['shm_bytes'] >> 20,
             p['kvm_cpu'], p['tcg_cpu'])],
        ['Pinning', 'vmA/vmB vCPU threads on CPU 0/1 and the host peer on '
         'CPU 0 %s' % {'auto': 'under KVM only (under TCG, QEMU\'s '
                       'main-loop threads deliver the interrupts and '
                       'pinning the vCPUs made it slower)',
                       'on': 'always', 'off': 'never'}.get(
                           p.get('pin', 'auto'))],
        ['Runs', '%d interleaved repetitions, order `%s`, fresh processes '
         'each; %s VM<->VM round trips after %s warm-up, %s host<->VM '
         'after %s; blast %s doorbells' % (
             p['reps'], p['order'], f1(p['count'], 0), f1(p['warmup'], 0),
             f1(p['host_count'], 0), f1(p['host_warmup'], 0),
             f1(p['blast'], 0))],
        ['Host TSC', '%s kHz (guests time with rdtsc at this rate)'
         % m.get('host_tsc_khz')],
        ['Load average', 'start %s, end %s (other work on the machine '
         'shows up as noise)' % (m.get('loadavg_start'),
                                 m.get('loadavg_end'))],
    ]))
    w('')
    if res['mode'] == 'quick':
        w('**Quick mode**: few round trips and repetitions, join up to '
          'N = %d: a smoke test, not a measurement.' % max(p['join_n']))
        w('')
    elif 'kvm' not in accels:
        w('Under TCG, %s round trips per run keep the full run at %d '
          'minutes here.' % (f1(p['count'], 0), res['duration_s'] // 60 + 1))
        w('')
    w('Configurations:')
    w('')
    rows = [[t, d] for t, d in res['configs'].items()]
    rows += [[t, d] for t, d in res.get('floors', {}).items()]
    w(md_table(['tag', 'what'], rows))
    w('')

    # latency tables
    for kind in ('vm_vm', 'host_vm'):
        w('## %s round trip (us)' % KINDS[kind])
        w('')
        if kind == 'vm_vm':
            w('Initiator guest timestamps with rdtsc around doorbell -> '
              'peer interrupt -> peer rings back -> interrupt. Median over '
              'the repetitions; spread = min-max of the per-run p50.')
        else:
            w('The host (the benchmark, a Python ivshmem peer busy-polling '
              'its eventfd) rings vmB, whose interrupt handler rings back; '
              'host clock. Python adds a few us to every configuration '
              'alike.')
        w('')
        rows = []
        for accel in accels:
            for tag in ('a', 'b', 'c', "c'", 'd'):
                a = agg.get(accel, {}).get(tag)
                if a is None:
                    continue
                e = a.get(kind)
                if not e and a.get('skipped'):
                    rows.append([tag, accel] + ['-'] * 8 + [
                        'skipped: %s' % a['skipped'][:70]])
                    continue
                if not e:
                    rows.append([tag, accel] + ['-'] * 8 + [
                        '%d/%d ok: %s' % (a['ok'], a['runs'],
                                          (a['errors'] or ['?'])[0][:60])])
                    continue
                rows.append([tag, accel] + [f1(e[k]['median'])
                                            for k in LAT_KEYS] +
                            [f1(e['rt_per_s']['median'], 0),
                             '%s-%s' % (f1(e['p50']['min']),
                                        f1(e['p50']['max'])),
                             '%d/%d' % (a['ok'], a['runs'])])
        fkinds = (('f1', 'vm_vm'), ('f1u', 'vm_vm'), ('f2p', 'host_host'),
                  ('f2b', 'host_host')) if kind == 'vm_vm' else \
            (('f1h', 'host_vm'),)
        for tag, fk in fkinds:
            for accel in ('kvm', 'host'):
                a = agg.get(accel, {}).get(tag)
                if a is None:
                    continue
                e = a.get(fk)
                if not e:
                    rows.append(['floor ' + tag, accel] + ['-'] * 8 + [
                        'skipped: %s' % a['skipped'] if a.get('skipped')
                        else '%d/%d ok' % (a['ok'], a['runs'])])
                    continue
                rows.append(['floor ' + tag, accel] +
                            [f1(e[k]['median']) for k in LAT_KEYS] +
                            [f1(e['rt_per_s']['median'], 0),
                             '%s-%s' % (f1(e['p50']['min']),
                                        f1(e['p50']['max'])),
                             '%d/%d' % (a['ok'], a['runs'])])
        w(md_table(['config', 'accel', 'p50', 'p90', 'p99', 'p99.9', 'max',
                    'mean', 'RT/s', 'p50 spread', 'runs'], rows))
        w('')

    # ratios
    w('## Ratios')
    w('')
    w('ours / upstream (medians; < 1 = ours faster for latencies, > 1 = '
      'ours faster for RT/s):')
    w('')
    rows = []
    for r in res['ratios']['ours_upstream']:
        rows.append([r['pair'], r['accel'], KINDS[r['kind']]] +
                    [f1(r[k], 2) for k in GATED_LAT + ('mean', 'rt_per_s')])
    w(md_table(['pair', 'accel', 'path', 'p50', 'p90', 'p99', 'p99.9', 'max',
                'mean', 'RT/s'], rows))
    w('')
    w('ours / floor (f1: the same doorbell path on raw KVM; f1u: its '
      'userspace-doorbell variant; f1h: host<->VM on raw KVM; f2p: two '
      'host threads, busy-polled eventfds, no VM at all):')
    w('')
    rows = []
    for r in res['ratios']['ours_floor']:
        if r['pair'].startswith(('c', 'd')):
            continue
        rows.append([r['pair'], r['accel'], KINDS[r['kind']],
                     f1(r['p50'], 2), f1(r['p99'], 2), r.get('note', '')])
    w(md_table(['pair', 'accel', 'path', 'p50', 'p99', 'note'], rows))
    w('')

    # blast
    w('## Doorbell blast')
    w('')
    w('vmA writes %s doorbells back to back (rate from its rdtsc); vmB '
      'counts the interrupts taken meanwhile. eventfd counters coalesce, '
      'so interrupts <= doorbells by design.' % f1(p['blast'], 0))
    w('')
    rows = []
    for accel in accels:
        for tag in ('a', 'b', 'c', "c'", 'd'):
            b = agg.get(accel, {}).get(tag, {}).get('blast')
            if not b:
                continue
            rows.append([tag, accel, f1(b['doorbells_per_s']['median'], 0),
                         '%s-%s' % (f1(b['doorbells_per_s']['min'], 0),
                                    f1(b['doorbells_per_s']['max'], 0)),
                         f1(b['interrupts_per_s']['median'], 0),
                         f1(b['interrupts_per_doorbell']['median'], 3)])
    w(md_table(['config', 'accel', 'doorbells/s', 'spread',
                'interrupts/s', 'interrupts/doorbell'], rows))
    w('')

    # exits
    w('## Exits to QEMU per doorbell')
    w('')
    rows = []
    for accel in accels:
        for tag in ('a', 'b', 'c', "c'", 'd'):
            a = agg.get(accel, {}).get(tag)
            if a is None:
                continue
            e = a.get('exits')
            cpu = a.get('qemu_cpu')
            cpu = '%s / %s' % (
                f1(cpu['vmA']['other_threads_pct']['median']),
                f1(cpu['vmB']['other_threads_pct']['median'])) if cpu else '-'
            if accel != 'kvm':
                rows.append([tag, accel, 'n/a', 'n/a', 'n/a', 'n/a', cpu,
                             'TCG: no KVM statistics'])
            elif a.get('skipped'):
                rows.append([tag, accel, '-', '-', '-', '-', '-',
                             'skipped: %s' % a['skipped']])
            elif not e:
                rows.append([tag, accel, '-', '-', '-', '-', cpu,
                             'query-stats failed'])
            else:
                rows.append([tag, accel] + [
                    f1(e[k + '_per_doorbell']['median'], 3)
                    for k in ('mmio_exits', 'io_exits', 'exits',
                              'irq_injections')] + [cpu, ''])
    if 'kvm' not in accels:
        rows.append(['all', 'kvm', 'n/a', 'n/a', 'n/a', 'n/a', 'n/a',
                     'skipped: %s' % res['kvm']['reason']])
    w('QMP `query-stats` (vCPU, provider kvm) deltas over the measured '
      'round trips, both VMs, divided by the doorbells (2 per round trip). '
      'QEMU CPU: the CPU time of QEMU threads other than the vCPU (main '
      'loop, RCU, ...) in % of the wall time of the round trips, vmA / '
      'vmB, from `/proc/PID/task/*/stat`.')
    w('')
    w(md_table(['config', 'accel', 'mmio_exits', 'io_exits', 'exits',
                'irq_injections', 'QEMU CPU %', 'note'], rows))
    w('')

    gap = res.get('kvm_gap')
    if gap:
        w('## KVM: the gap to the raw-KVM floor')
        w('')
        w(KVM_GAP_TEXT)
        w('')
        w('`bench/kvm-gap.py` in this run (p50 of each run, median over '
          'interleaved repetitions; per round trip, both VMs: KVM exits, '
          'halt exits, instructions KVM emulated, wake-ups of QEMU threads '
          'other than the vCPU):')
        w('')
        w(gap['markdown'].strip())
        w('')

    # copy
    w('## BAR2 copy bandwidth (MB/s)')
    w('')
    w('In the guest, `rep movsl`, %s MiB per size and direction; BAR2 '
      'mapped write-back (MTRR). Median over the repetitions.'
      % f1(p['copy_bytes_per_size'] / 1048576.0, 0))
    w('')
    rows = []
    for accel in accels:
        for tag in ('a', 'c', 'd'):
            for c in agg.get(accel, {}).get(tag, {}).get('copy', []):
                rows.append([tag, accel, size_name(c['bytes'])] + [
                    f1(c[k]['median'], 0) if c[k] else '-'
                    for k in ('ram_to_bar2_mb_s', 'bar2_to_ram_mb_s',
                              'ram_to_ram_mb_s')] + [
                    '%.0f%% / %.0f%%' % (
                        100 * c['ram_to_bar2_vs_ram']['median'],
                        100 * c['bar2_to_ram_vs_ram']['median'])
                    if c['ram_to_bar2_vs_ram'] else '-'])
    w(md_table(['config', 'accel', 'size', 'RAM->BAR2', 'BAR2->RAM',
                'RAM->RAM', 'BAR2 vs RAM (to / from)'], rows))
    w('')

    # join
    w('## Join cost of the N-th peer (%d vectors)' % p['join_vectors'])
    w('')
    w('N-1 host peers (`bench/join-peers.py`) hold their eventfds on the '
      'same server; then one QEMU, paused (`-S`), joins as the N-th peer. '
      'Ready = QMP answers `query-status`, every host peer holds the new '
      "peer's %d eventfds, and QEMU stopped gaining file descriptors (no "
      'change for %.1f s; the time of the last change counts, polled '
      'every 10 ms). Ours runs '
      'with `x-max-eventfds` raised to 65536 so both devices take every '
      'peer; RSS/PSS from `/proc/PID/smaps_rollup` once ready (PSS '
      'shares library pages with any other QEMU running meanwhile, RSS '
      'does not). '
      'Median of %d interleaved runs.' % (
          p['join_vectors'], p['join_settle_s'], p['join_reps']))
    w('')
    rows = []
    js = res.get('join_summary', {})
    for accel in accels:
        d = js.get(accel, {})
        o, u = d.get('ours', {}), d.get('upstream', {})
        ns = sorted(set(int(n) for n in list(o) + list(u)
                        if not n.startswith('_')))
        for n in ns:
            oe, ue = o.get(str(n), {}), u.get(str(n), {})

            def cell(e, k, div=1.0, nd=0):
                if not e.get(k):
                    return 'failed' if e.get('runs') else '-'
                return f1(e[k]['median'] / div, nd)

            def st(e):
                if not e:
                    return '-'
                if e['ok'] == e['runs']:
                    return '%d/%d' % (e['held']['median'], e['expected'])
                return '; '.join(sorted(set(s[:70] for s in e['status']
                                            if s != 'ok')))
            r = None
            if oe.get('ready') and ue.get('ready'):
                r = oe['ready']['median'] / ue['ready']['median']
            rows.append([n, accel, cell(oe, 'ready'), cell(ue, 'ready'),
                         f1(r, 2), cell(oe, 'qmp'), cell(ue, 'qmp'),
                         cell(oe, 'rss', 1024.0, 1),
                         cell(ue, 'rss', 1024.0, 1),
                         cell(oe, 'pss', 1024.0, 1),
                         cell(ue, 'pss', 1024.0, 1), st(oe), st(ue)])
    w(md_table(['N', 'accel', 'ours ms', 'upstream ms', 'ours/up',
                'ours QMP ms', 'up QMP ms', 'ours RSS MiB', 'up RSS MiB',
                'ours PSS MiB', 'up PSS MiB', 'ours eventfds',
                'up eventfds'], rows))
    w('')
    for accel in accels:
        d = js.get(accel, {})
        for dev in ('ours', 'upstream'):
            e = d.get(dev)
            if not e:
                continue
            w('- %s, %s: memory per peer %s kB RSS, %s kB PSS, %s kB '
              'anonymous PSS (least-squares slope over N); %s.' % (
                  'ours' if dev == 'ours' else 'QEMU 10.0', accel,
                  f1(e.get('_rss_kb_per_peer')),
                  f1(e.get('_pss_kb_per_peer')),
                  f1(e.get('_anon_kb_per_peer')),
                  'works at every N tried (up to %s)' % e['_works_up_to']
                  if not e.get('_fails_at') else
                  'stops working at N = %s: %s' % (
                      e['_fails_at'], '; '.join(sorted(set(
                          s for s in e[str(e['_fails_at'])]['status']
                          if s != 'ok'))))))
        e = d.get('ours-default')
        if e:
            for n, x in sorted((k, v) for k, v in e.items()
                               if not k.startswith('_')):
                w('- ours with its default `x-max-eventfds=%d`, %s, N = %s: '
                  '%s' % (8192, accel, n, x.get('note') or
                          '; '.join(x['status'])))
    w('')

    # targets
    w('## Targets')
    w('')
    w(md_table(['#', 'target', 'accel', 'measured', 'verdict'],
               [[t['id'], t['target'], t['accel'], t['value'],
                 '**%s**' % t['verdict'] if t['verdict'].startswith(MISS)
                 else t['verdict']] for t in res['targets']]))
    w('')
    w('PASS "(within spread)": ours is worse on the median but inside '
      "the range the other side's repetitions covered, i.e. not a "
      'measured difference. Targets never fail the build.')
    w('')

    # files
    w('## Files')
    w('')
    w('- Results: [`%s`](%s)' % (res['files']['json'],
                                 rel(res['files']['json'])))
    for png in res['files']['png']:
        w('- ![%s](%s)' % (os.path.basename(png), rel(png)))
    w('')
    w('## Not measured here')
    w('')
    for line in not_measured(res):
        w('- ' + line)
    w('')
    w('## Running it')
    w('')
    w('    make bench            # full: interleaved repetitions, join up '
      'to N = 256')
    w('    make bench QUICK=1    # or make bench-quick: under 2 minutes')
    w('    make bench BENCH_ARGS="--reps 3 --count 20000"   # see '
      'bench/run-bench.py --help')
    w('    bench/report.py bench/results/<run>.json --doc docs/'
      'benchmarks.md   # re-render')
    w('')
    w('`make bench` builds what it needs (both QEMUs, the test guest, the '
      'floors, the server) and is never part of `make check`. KVM '
      'configurations run wherever the test guest boots under KVM, TCG '
      'ones always; a quick run does not replace a full run\'s report.')
    w('')
    return '\n'.join(L)


def not_measured(res):
    out = []
    if not res['kvm']['usable']:
        out.append('Everything under KVM (configs a-d under `-accel kvm`, '
                   'floors f1/f1u/f1h, exits per doorbell from '
                   '`query-stats`, targets T1 and T3): skipped: %s. The '
                   'same `make bench` runs them where KVM works.'
                   % res['kvm']['reason'])
    out.append('Under TCG there are no ioeventfds or irqfds in a kernel: '
               'QEMU matches ioeventfds in its own memory dispatch and '
               'injects MSI-X from its main loop, so a/b and c/c\' differ '
               'far less than they do under KVM, and every latency is '
               'dominated by TCG itself.')
    for accel in res['accelerators']:
        low = {}
        for tag in ('a', 'c'):
            for c in res['aggregate'].get(accel, {}).get(tag, {}).get(
                    'copy', []):
                for k in ('ram_to_bar2_vs_ram', 'bar2_to_ram_vs_ram'):
                    if c[k]:
                        low[tag] = min(low.get(tag, 9), c[k]['median'])
        if accel != 'kvm' and low.get('a', 1) < 0.9 and \
           low.get('c', 1) < 0.9:
            out.append('BAR2 copy vs RAM->RAM under %s (T4): the largest '
                       'copies reach %.0f%% with ours and %.0f%% with '
                       "QEMU's own device alike, so this comes from the "
                       'emulator, not from the device; the target means '
                       'something under KVM, where BAR2 is host memory '
                       'the guest maps write-back.' % (
                           accel.upper(), 100 * low['a'], 100 * low['c']))
    fl = [r for r in res['runs'] if r.get('tag', '').startswith('f1') and
          r.get('status') == 'skipped']
    if fl:
        out.append('kvm-floor: %s.' % fl[0].get('reason'))
    if res['server']['style'] != 'ivsh':
        out.append("The project's server was missing: QEMU's contrib "
                   'server fed every configuration.')
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('json')
    ap.add_argument('--doc', help='also write the markdown here')
    ap.add_argument('--plots', action='store_true', help='redraw the PNGs')
    o = ap.parse_args()
    with open(o.json) as f:
        res = json.load(f)
    # the summaries are stored; ratios and targets follow this file's rules
    res['ratios'] = ratios(res)
    res['targets'] = targets(res)
    if o.plots:
        stem = os.path.basename(o.json)[:-5]
        plots(res, os.path.dirname(o.json), stem)
    md = markdown(res, os.path.dirname(o.doc) if o.doc else None)
    print(md)
    if o.doc:
        with open(o.doc, 'w') as f:
            f.write(md)


if __name__ == '__main__':
    main()
