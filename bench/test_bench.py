#!/usr/bin/env python3
"""Checks of bench.py's arithmetic and of its refusal rule, without any
server: python3 bench/test_bench.py"""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402


def kind(name, wall, cpu=None):
    k = bench.Kind(name, name)
    k.wall = list(wall)
    k.cpu = list(cpu) if cpu is not None else [None] * len(k.wall)
    k.wait = [None] * len(k.wall)
    return k


class MedianCi(unittest.TestCase):
    def test_holds_the_median(self):
        xs = list(range(40))
        lo, hi = bench.median_ci(xs)
        self.assertLessEqual(lo, bench.med(xs))
        self.assertGreaterEqual(hi, bench.med(xs))
        # 40 rounds: the 14th and 27th order statistics (sign test, 95 %)
        self.assertEqual((lo, hi), (13, 26))

    def test_few_rounds_give_the_whole_range(self):
        self.assertEqual(bench.median_ci([3, 1, 2]), (1, 3))


class Floor(unittest.TestCase):
    def test_a_baseline_faster_than_the_sdk_is_refused(self):
        # The run: not preloaded 74 us (CPU 57) against the SDK's 134 us.
        sdk = kind("sdk", [134] * 10, [40] * 10)
        off = kind("off", [74] * 10, [57] * 10)
        on = kind("on", [160] * 10, [85] * 10)
        r = bench.Refusals()
        self.assertFalse(r.floor("statistics overhead", [("baseline", off), ("subject", on)], sdk))
        self.assertIn("statistics overhead", r.names)
        self.assertEqual(len(r.lines), 1)
        self.assertTrue(r.lines[0].startswith("REFUSED statistics overhead: its baseline, off"))

    def test_less_cpu_than_the_sdk_is_refused(self):
        sdk = kind("sdk", [50] * 5, [35] * 5)
        inv = kind("invoke", [70] * 5, [30] * 5)
        r = bench.Refusals()
        self.assertFalse(r.floor("invoke / SDK", [("subject", inv)], sdk))

    def test_paired_ratio_decides(self):
        # Slower than the SDK in every round, whatever the drift.
        sdk = kind("sdk", [50, 100, 50, 100, 50], [35] * 5)
        inv = kind("invoke", [60, 120, 60, 120, 60], [50] * 5)
        r = bench.Refusals()
        self.assertTrue(r.floor("invoke / SDK", [("subject", inv)], sdk))
        self.assertEqual(r.lines, [])

    def test_a_fan_out_faster_than_its_ideal_is_refused(self):
        r = bench.Refusals()
        self.assertFalse(r.bound("fanout efficiency", 150.0, 200.0, lambda v, i: v < i))
        self.assertTrue(r.bound("data_fanout efficiency", 900.0, 800.0, lambda v, i: v < i))
        self.assertEqual(r.names, {"fanout efficiency"})


class Stats(unittest.TestCase):
    def test_overhead_is_the_paired_cpu_difference_over_the_wall_time(self):
        on = kind("on", [80] * 4, [62, 61, 63, 62])
        off = kind("off", [80] * 4, [60, 60, 60, 60])
        on.wait = off.wait = [20] * 4
        f = bench.stats_figures(on, off)
        self.assertAlmostEqual(f["stats_added_cpu_per_call_us"], 2.0)
        self.assertAlmostEqual(f["stats_overhead_pct"], 2.5)


if __name__ == "__main__":
    unittest.main()
