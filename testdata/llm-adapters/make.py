#!/usr/bin/env python3
"""Writes the small LLM-Adapters-format fixtures of this folder (the format of ../shared's
data/llm-adapters files: instruction, input, output, answer), made from templates with a fixed
seed, so tests run where ../shared is absent. Run from this folder: python3 make.py"""
import json
import random

rng = random.Random(260)
things = {
    "a mammal": ["a dog", "a whale", "a horse", "a bat", "a mouse"],
    "a bird": ["a robin", "an owl", "a sparrow", "a duck", "a hawk"],
    "a plant": ["a fern", "an oak tree", "a rose", "a cactus", "moss"],
    "a metal": ["iron", "copper", "gold", "aluminum", "silver"],
    "a source of energy": ["sunlight", "wind", "coal", "flowing water", "natural gas"],
    "a liquid at room temperature": ["water", "milk", "juice", "oil", "vinegar"],
}
names = ["Lily", "Tom", "Ben", "Sue", "Max", "Anna", "Sam", "Mia"]


def arc(n):
    out = []
    kinds = list(things)
    for _ in range(n):
        kind = rng.choice(kinds)
        right = rng.choice(things[kind])
        wrong = [rng.choice(things[k]) for k in rng.sample([k for k in kinds if k != kind], 3)]
        opts = wrong[:]
        pos = rng.randrange(4)
        opts.insert(pos, right)
        q = "Which of these is %s?" % kind
        listed = " ".join("Answer%d: %s" % (i + 1, o) for i, o in enumerate(opts))
        ans = "answer%d" % (pos + 1)
        out.append({"instruction": "Please choose the correct answer to the question: %s\n\n%s\n\n"
                    "Answer format: answer1/answer2/answer3/answer4" % (q, listed),
                    "input": "", "output": "the correct answer is " + ans, "answer": ans})
    return out


def boolq(n):
    out = []
    kinds = list(things)
    for _ in range(n):
        kind = rng.choice(kinds)
        truth = rng.random() < 0.5
        k = kind if truth else rng.choice([x for x in kinds if x != kind])
        item = rng.choice(things[k])
        ans = "true" if truth else "false"
        out.append({"instruction": "Please answer the following question with true or false, question: is %s %s?\n\n"
                    "Answer format: true/false" % (item, kind), "input": "", "output": "the correct answer is " + ans,
                    "answer": ans})
    return out


def gsm8k(n):
    out = []
    for _ in range(n):
        who, a, b = rng.choice(names), rng.randint(2, 20), rng.randint(2, 20)
        out.append({"instruction": "%s has %d apples and buys %d more. How many apples does %s have now?" % (who, a, b, who),
                    "input": "", "output": "\nA: %s has %d + %d = %d apples. The answer is %d." % (who, a, b, a + b, a + b),
                    "answer": "%d.0" % (a + b)})
    return out


def math_data(n):
    out = []
    for _ in range(n):
        who, a, b, c = rng.choice(names), rng.randint(2, 30), rng.randint(2, 9), rng.randint(1, 9)
        total = a * b + c
        out.append({"instruction": "%s buys %d boxes of %d pencils and finds %d more. How many pencils does %s have?" % (who, a, b, c, who),
                    "input": "", "output": "%s has %d * %d = %d pencils in boxes and %d more, so %d + %d = %d. The answer is %d" % (
                        who, a, b, a * b, c, a * b, c, total, total), "answer": str(total)})
    return out


for name, items in [("math_data.json", math_data(128)), ("ARC-Easy-train.json", arc(256)), ("ARC-Easy-test.json", arc(32)),
                    ("boolq-test.json", boolq(32)), ("gsm8k-test.json", gsm8k(8))]:
    with open(name, "w") as f:
        json.dump(items, f, indent=1)
        f.write("\n")
