"""Benchmark: import, filter (with near-duplicate detection) and export of 160K dialogues.

    python benchmarks/bench_export.py [--dialogues 160000] [--workdir DIR] [--keep]

Generates realistic multi-turn interactive-translation dialogues (2-5 user turns; pairs among
en/zh/de/fr; instructions in en or zh; ~1% exact duplicates, ~1% near-duplicates, ~1% refusals,
~1% wrong-language answers) as a ``{"messages": [...]}`` JSONL file, imports it into a fresh
workspace with ``itcollect import``, then times ``itcollect filter`` and
``itcollect export --hf OUT --format all`` as separate processes. Each step reports wall time,
dialogues per second and the peak RSS of its process (``os.wait4``). Targets: filter + export of
160K in <= 60 s on 2 cores, peak RSS <= 1.5 GB.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

EN = ("government city council minister economy market report prices housing bill parliament election "
      "company workers union strike school students teachers hospital doctors patients river flood rain "
      "weather police court judge law trade exports imports bank interest rates inflation energy oil gas "
      "climate policy research university scientists study data results city centre train station airport "
      "flights tourists museum exhibition artists football team match season coach players fans record "
      "profit shares investors budget tax reform pension health care village farmers harvest water supply "
      "road bridge construction plan project cost million billion percent year month week Tuesday Monday "
      "said announced warned reported expected increased decreased rose fell opened closed approved "
      "rejected signed agreed launched").split()
DE = ("Regierung Stadtrat Minister Wirtschaft Markt Bericht Preise Wohnungsgesetz Parlament Wahl Unternehmen "
      "Arbeiter Gewerkschaft Streik Schule Schüler Lehrer Krankenhaus Ärzte Patienten Fluss Hochwasser Regen "
      "Wetter Polizei Gericht Richter Gesetz Handel Exporte Bank Zinsen Inflation Energie Klima Politik "
      "Forschung Universität Studie Daten Ergebnisse Bahnhof Flughafen Museum Ausstellung Mannschaft Spiel "
      "Saison Trainer Gewinn Aktien Haushalt Steuer Reform Rente Dorf Bauern Ernte Wasser Straße Brücke "
      "Projekt Kosten Millionen Prozent Jahr Woche sagte kündigte warnte berichtete stieg fiel eröffnete "
      "genehmigte unterzeichnete die der das und mit für nicht auch nach über").split()
FR = ("gouvernement conseil municipal ministre économie marché rapport prix logement projet loi parlement "
      "élection entreprise travailleurs syndicat grève école élèves enseignants hôpital médecins patients "
      "rivière inondation pluie météo police tribunal juge commerce exportations banque taux intérêt "
      "inflation énergie climat politique recherche université étude données résultats gare aéroport musée "
      "exposition équipe match saison entraîneur bénéfice actions budget impôt réforme retraite village "
      "agriculteurs récolte eau route pont projet coût millions pourcent année semaine a déclaré annoncé "
      "averti augmenté baissé ouvert approuvé signé le la les et avec pour dans sur une des").split()
ZH = list("政府市议会部长经济市场报告价格住房法案议会选举公司工人工会罢工学校学生教师医院医生病人河流洪水天气警察法院法官"
          "法律贸易出口进口银行利率通货膨胀能源石油天然气气候政策研究大学科学家数据结果车站机场游客博物馆展览足球队比赛"
          "赛季教练球员记录利润股票投资者预算税收改革养老金健康村庄农民收成供水道路桥梁建设计划项目成本百万十亿年月周"
          "表示宣布警告报道预计增加减少上涨下跌开放关闭批准拒绝签署同意启动")
WORDS = {"en": EN, "de": DE, "fr": FR}
#: ``prose=True`` puts these between the content words, as running text has them (the default
#: sentences are strings of content words, which langid's function words leave open and its
#: content-word step mostly decides; prose is decided by the function words).
FUNCTION_WORDS = {"en": "the of and to in for with on at by from that was".split(),
                  "de": "der die das und zu in für mit auf von den dem ist".split(),
                  "fr": "le la les et de à en pour avec sur par des du est".split()}
LANG_EN = {"en": "English", "zh": "Chinese", "de": "German", "fr": "French"}
LANG_ZH = {"en": "英文", "zh": "中文", "de": "德文", "fr": "法文"}
PAIRS = [("en", "zh", .35), ("zh", "en", .35), ("en", "de", .08), ("en", "fr", .08), ("zh", "de", .07),
         ("zh", "fr", .07)]
FOLLOW_EN = ["Please use a more formal register.", "Make it shorter, at most 12 words.", "Make it sound more natural.",
             "Use the term '{w}' instead.", "Why did you choose the word '{w}'?", "Now give it in {L}.",
             "What could this mean for ordinary people?", "Rewrite it as a newspaper headline.",
             "Translate your version back and compare it with the original.", "Summarise the news in one line."]
FOLLOW_ZH = ["请改成更正式的语气。", "请控制在二十个字以内。", "请润色一下，让它更通顺。", "把“{w}”换成更准确的说法。",
             "为什么用“{w}”这个词？", "现在请译成{L}。", "这件事对普通人意味着什么？", "请改成新闻标题的风格。",
             "把你的译文回译并和原文比较。", "用一句话总结这条新闻。"]


def sentence(rng: random.Random, lang: str, n: int | None = None, prose: bool = False) -> str:
    if lang == "zh":
        k = n or rng.randint(18, 40)
        return "".join(rng.choice(ZH) for _ in range(k)) + "。"
    words = WORDS[lang]
    k = n or rng.randint(10, 24)
    if prose:
        glue = FUNCTION_WORDS[lang]
        s = " ".join(f"{rng.choice(glue)} {rng.choice(words)}" if rng.random() < 0.45 else rng.choice(words)
                     for _ in range(k))
    else:
        s = " ".join(rng.choice(words) for _ in range(k))
    return s[0].upper() + s[1:] + "."


def first_request(rng: random.Random, instr: str, tgt: str, src_text: str) -> str:
    if instr == "en":
        return rng.choice([f"Translate into {LANG_EN[tgt]}: \"{src_text}\"",
                           f"Please translate this news sentence into {LANG_EN[tgt]}:\n{src_text}",
                           f"Could you render the following in {LANG_EN[tgt]}? \"{src_text}\""])
    return rng.choice([f"把这句话译成{LANG_ZH[tgt]}：“{src_text}”", f"请将下面的新闻句子翻译成{LANG_ZH[tgt]}：\n{src_text}"])


def make_dialogue(rng: random.Random, prose: bool = False) -> dict:
    r = rng.random()
    acc = 0.0
    src, tgt = PAIRS[-1][:2]
    for s_, t_, w in PAIRS:
        acc += w
        if r <= acc:
            src, tgt = s_, t_
            break
    instr = "en" if rng.random() < 0.5 else "zh"
    src_text = sentence(rng, src, prose=prose)
    n_user = rng.choice([2, 2, 3, 3, 4, 4, 5])
    messages = [{"role": "user", "content": first_request(rng, instr, tgt, src_text)},
                {"role": "assistant", "content": sentence(rng, tgt, len(src_text) // 3 if tgt == "zh" and src != "zh"
                                                          else None, prose)}]
    for _ in range(n_user - 1):
        templ = rng.choice(FOLLOW_EN if instr == "en" else FOLLOW_ZH)
        w = rng.choice(WORDS.get(tgt, EN)) if tgt != "zh" else "".join(rng.choice(ZH) for _ in range(2))
        req = templ.format(w=w, L=(LANG_EN if instr == "en" else LANG_ZH)[rng.choice(["de", "fr"])])
        explain = any(x in templ for x in ("Why", "为什么", "mean", "意味", "Summarise", "总结"))
        ans = sentence(rng, instr if explain else tgt, prose=prose)
        messages += [{"role": "user", "content": req}, {"role": "assistant", "content": ans}]
    return {"messages": messages, "src_lang": src, "tgt_lang": tgt, "instruction_lang": instr, "source": src_text}


def generate(path: Path, n: int, seed: int = 0, prose: bool = False) -> None:
    rng = random.Random(seed)
    recent: list[dict] = []
    with path.open("w", encoding="utf-8") as fh:
        for i in range(n):
            u = rng.random()
            if u < 0.01 and recent:  # exact duplicate
                rec = rng.choice(recent)
            elif u < 0.02 and recent:  # near duplicate: one answer word changed
                rec = json.loads(json.dumps(rng.choice(recent)))
                last = rec["messages"][-1]
                last["content"] = last["content"][:-1] + " " + ("更新" if _has_han(last["content"]) else "today") + "."
            else:
                rec = make_dialogue(rng, prose)
                if u < 0.03:
                    rec["messages"][1]["content"] = "I'm sorry, but I can't help with that request."
                elif u < 0.04:
                    rec["messages"][1]["content"] = rec["source"]  # the source copied
            rec["id"] = f"bench-{i}"
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
            if len(recent) < 2000:
                recent.append(rec)
            elif rng.random() < 0.01:
                recent[rng.randrange(len(recent))] = rec


def _has_han(s: str) -> bool:
    return any("\u4e00" <= c <= "\u9fff" for c in s)


def run_step(cmd: list[str], cwd: Path) -> tuple[float, float, float, str, float]:
    """One process: (wall seconds, peak RSS of its largest process in MB, peak RSS of the whole
    process tree (it and its workers, sampled every 50 ms) in MB, stdout, CPU seconds).

    ``os.wait4`` gives the child's rusage including the workers it reaped (Linux RUSAGE_BOTH)."""
    import threading

    import psutil

    env = dict(os.environ, ITCOLLECT_PROGRESS="0")
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        pid = _spawn(cmd, cwd, env, out, err)
        tree_peak = [0]
        done = threading.Event()

        def sample() -> None:
            try:
                proc = psutil.Process(pid)
                while not done.is_set():
                    try:
                        rss = proc.memory_info().rss + sum(c.memory_info().rss for c in proc.children(True))
                        tree_peak[0] = max(tree_peak[0], rss)
                    except psutil.Error:
                        pass
                    done.wait(0.05)
            except psutil.Error:
                return

        th = threading.Thread(target=sample, daemon=True)
        th.start()
        _, status, usage = os.wait4(pid, 0)
        secs = time.perf_counter() - t0
        done.set()
        th.join()
        out.seek(0)
        err.seek(0)
        text, errtext = out.read(), err.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{errtext}")
    return secs, usage.ru_maxrss / 1024, tree_peak[0] / 2**20, text, usage.ru_utime + usage.ru_stime


def _spawn(cmd: list[str], cwd: Path, env: dict, out, err) -> int:
    pid = os.fork()
    if pid == 0:  # child
        try:
            os.chdir(cwd)
            os.dup2(out.fileno(), 1)
            os.dup2(err.fileno(), 2)
            os.execve(cmd[0], cmd, env)
        finally:
            os._exit(127)
    return pid


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dialogues", type=int, default=160_000)
    ap.add_argument("--workdir", default=None, help="Folder for the data and workspace (default: a temp dir).")
    ap.add_argument("--keep", action="store_true", help="Keep the workdir.")
    ap.add_argument("--skip-import", action="store_true", help="Re-use an imported workspace in --workdir.")
    args = ap.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="itc-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    exe = [sys.executable, "-m", "itcollect"]
    data, ws, out = work / "dialogues.jsonl", work / "ws", work / "out"
    n = args.dialogues
    print(f"cores: {os.cpu_count()}, dialogues: {n:,}, workdir: {work}")
    if not args.skip_import:
        t0 = time.perf_counter()
        generate(data, n)
        print(f"generate  {time.perf_counter() - t0:7.1f} s  ({data.stat().st_size / 1e6:,.0f} MB JSONL)")
        if ws.exists():
            shutil.rmtree(ws)
        run_step([*exe, "init", str(ws)], work)
        secs, rss, tree, text, cpu = run_step([*exe, "-C", str(ws), "import", str(data)], work)
        print(f"import    {secs:7.1f} s wall  {cpu:7.1f} s CPU  {n / secs:8,.0f} dialogues/s  "
              f"peak RSS {rss:6.0f} MB (tree {tree:6.0f} MB)   ({text.strip()})")
    load = os.getloadavg()[0]
    secs_f, rss_f, tree_f, text, cpu_f = run_step([*exe, "-C", str(ws), "filter"], work)
    m = re.search(r"filter run \d+: ([\d,]+) dialogues", text)
    n = int(m.group(1).replace(",", "")) if m else n  # what the store holds (duplicates were not imported)
    print(f"filter    {secs_f:7.1f} s wall  {cpu_f:7.1f} s CPU  {n / secs_f:8,.0f} dialogues/s  "
          f"peak RSS {rss_f:6.0f} MB (tree {tree_f:6.0f} MB)  load before {load:.1f}")
    print("          " + text.strip().replace("\n", "\n          "))
    load = os.getloadavg()[0]
    secs_e, rss_e, tree_e, text, cpu_e = run_step([*exe, "-C", str(ws), "export", "--hf", str(out), "--format", "all"],
                                                  work)
    print(f"export    {secs_e:7.1f} s wall  {cpu_e:7.1f} s CPU  {n / secs_e:8,.0f} dialogues/s  "
          f"peak RSS {rss_e:6.0f} MB (tree {tree_e:6.0f} MB)  load before {load:.1f}   ({text.strip()})")
    print(f"filter + export: {secs_f + secs_e:.1f} s wall, {cpu_f + cpu_e:.1f} s CPU (target <= 60 s on 2 cores); "
          f"peak RSS {max(tree_f, tree_e):.0f} MB for the process tree (target <= 1536 MB)")
    if not args.keep and not args.workdir:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
