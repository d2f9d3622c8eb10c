package org.hospitalhub.federation.study;

import java.math.BigDecimal;
import java.math.MathContext;
import java.util.Map;
import java.util.NavigableMap;
import java.util.TreeMap;

import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;

import org.apache.commons.math3.distribution.ChiSquaredDistribution;
import org.apache.commons.math3.distribution.TDistribution;

/**
 * The statistics of the analysis steps, computed from sufficient statistics only (counts, exact decimal sums, value
 * histograms, contingency tables), so that a node's figures and the pooled figures of several nodes come from the same
 * arithmetic: pooled histograms and sums are exact, and so are the pooled mean, SD, median and IQR.
 */
final class Statistics {

    static final MathContext MC = MathContext.DECIMAL128;
    private static final JsonNodeFactory F = JsonNodeFactory.instance;

    private Statistics() {
    }

    /** n, sum, sum of squares, mean, SD (n − 1), median, Q1, Q3 (linear between closest ranks) of a histogram. */
    static ObjectNode numeric(NavigableMap<BigDecimal, Long> histogram) {
        long n = 0;
        BigDecimal sum = BigDecimal.ZERO;
        BigDecimal squares = BigDecimal.ZERO;
        for (Map.Entry<BigDecimal, Long> e : histogram.entrySet()) {
            BigDecimal c = BigDecimal.valueOf(e.getValue());
            n += e.getValue();
            sum = sum.add(e.getKey().multiply(c));
            squares = squares.add(e.getKey().multiply(e.getKey()).multiply(c));
        }
        ObjectNode o = F.objectNode();
        o.put("n", n);
        o.put("sum", sum.stripTrailingZeros().toPlainString());
        o.put("sumSquares", squares.stripTrailingZeros().toPlainString());
        if (n == 0) {
            return o;
        }
        o.put("mean", sum.divide(BigDecimal.valueOf(n), MC).doubleValue());
        if (n > 1) {
            o.put("sd", Math.sqrt(variance(n, sum, squares)));
        }
        o.put("median", quantile(histogram, n, 0.5));
        o.put("q1", quantile(histogram, n, 0.25));
        o.put("q3", quantile(histogram, n, 0.75));
        return o;
    }

    /** Sample variance from n, Σx and Σx², in exact decimal arithmetic until the last step. */
    static double variance(long n, BigDecimal sum, BigDecimal squares) {
        BigDecimal bn = BigDecimal.valueOf(n);
        return bn.multiply(squares).subtract(sum.multiply(sum)).divide(bn.multiply(BigDecimal.valueOf(n - 1)), MC)
                .doubleValue();
    }

    /** The p-quantile as PostgreSQL's percentile_cont computes it: linear between the closest ranks. */
    static double quantile(NavigableMap<BigDecimal, Long> histogram, long n, double p) {
        double h = (n - 1) * p;
        long lo = (long) Math.floor(h);
        long hi = (long) Math.ceil(h);
        BigDecimal vlo = null;
        BigDecimal vhi = null;
        long seen = 0;
        for (Map.Entry<BigDecimal, Long> e : histogram.entrySet()) {
            long next = seen + e.getValue();
            if (vlo == null && lo < next) {
                vlo = e.getKey();
            }
            if (hi < next) {
                vhi = e.getKey();
                break;
            }
            seen = next;
        }
        return vlo.doubleValue() + (h - lo) * (vhi.doubleValue() - vlo.doubleValue());
    }

    /** Welch's two-sample t-test from each group's n, Σx, Σx². */
    static ObjectNode welch(long n1, BigDecimal s1, BigDecimal q1, long n2, BigDecimal s2, BigDecimal q2) {
        ObjectNode o = F.objectNode();
        if (n1 < 2 || n2 < 2) {
            o.put("error", "each group needs at least 2 values");
            return o;
        }
        double m1 = s1.divide(BigDecimal.valueOf(n1), MC).doubleValue();
        double m2 = s2.divide(BigDecimal.valueOf(n2), MC).doubleValue();
        double v1 = variance(n1, s1, q1) / n1;
        double v2 = variance(n2, s2, q2) / n2;
        if (v1 + v2 == 0) {
            o.put("error", "both groups have no variance");
            return o;
        }
        double t = (m1 - m2) / Math.sqrt(v1 + v2);
        double df = (v1 + v2) * (v1 + v2) / (v1 * v1 / (n1 - 1) + v2 * v2 / (n2 - 1));
        o.put("meanDifference", m1 - m2);
        o.put("t", t);
        o.put("df", df);
        o.put("p", 2 * new TDistribution(null, df).cumulativeProbability(-Math.abs(t)));
        return o;
    }

    /** Pearson's chi-square test of independence on a contingency table (rows × columns of counts). */
    static ObjectNode chiSquare(TreeMap<String, TreeMap<String, Long>> table) {
        ObjectNode o = F.objectNode();
        TreeMap<String, Long> cols = new TreeMap<>();
        long total = 0;
        for (var row : table.values()) {
            for (var c : row.entrySet()) {
                cols.merge(c.getKey(), c.getValue(), Long::sum);
                total += c.getValue();
            }
        }
        if (table.size() < 2 || cols.size() < 2) {
            o.put("error", "the table needs at least 2 rows and 2 columns");
            return o;
        }
        double chi = 0;
        for (var row : table.values()) {
            long rowTotal = row.values().stream().mapToLong(Long::longValue).sum();
            for (var c : cols.entrySet()) {
                double expected = (double) rowTotal * c.getValue() / total;
                double observed = row.getOrDefault(c.getKey(), 0L);
                chi += (observed - expected) * (observed - expected) / expected;
            }
        }
        int df = (table.size() - 1) * (cols.size() - 1);
        o.put("chiSquare", chi);
        o.put("df", df);
        o.put("p", 1 - new ChiSquaredDistribution(null, df).cumulativeProbability(chi));
        return o;
    }
}
