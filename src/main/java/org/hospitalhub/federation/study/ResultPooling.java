package org.hospitalhub.federation.study;

import java.math.BigDecimal;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;

/**
 * Pools the results of one study step from several nodes, exactly: from each node's sufficient statistics, never from
 * its derived figures. A pooled mean, SD, median or IQR equals what the union of the nodes' data gives, because the
 * nodes send exact decimal sums and full value histograms and this class runs the same {@link Statistics} on their
 * sums.
 * <p>
 * Input: node id → the JSON a node's {@link StudyExecutor} returned for the step, i.e. {@code {"kind": "cohort",
 * "persons": 120, "entries": 130}}, {@code {"kind": "variables", "entries": 130, "variables": [...]}} or {@code
 * {"kind": "analysis", "minCellCount": 5, "analyses": {name: result}}}, where a result is one of
 * <ul>
 * <li>{@code {"kind": "count", "n": 120}}</li>
 * <li>{@code {"kind": "numeric", "variable": "age", "n": 120, "sum": "6012", "sumSquares": "...", "mean": ..., "sd":
 * ..., "median": ..., "q1": ..., "q3": ..., "histogram": [["52", 3], ...]}}</li>
 * <li>{@code {"kind": "proportion", "variable": "sex", "n": 120, "categories": {"female": {"count": 61,
 * "proportion": 0.508}, ...}}}</li>
 * <li>{@code {"kind": "tTest", "variable": .., "groupBy": .., "groups": {"0": {"n": .., "sum": .., "sumSquares": ..,
 * "mean": ..}, "1": {...}}, "t": .., "df": .., "p": .., "meanDifference": ..}}</li>
 * <li>{@code {"kind": "chiSquare", "variable": .., "groupBy": .., "table": {"row": {"column": count}}, "chiSquare": ..,
 * "df": .., "p": ..}}</li>
 * </ul>
 * A count below the node's minimum cell count arrives as the string {@code "<5"}: that node's figure is left out of
 * the pooled one, which then lists the node under {@code suppressedNodes} (the pooled figure covers the other nodes).
 * <p>
 * Output of {@link #pool}: {@code {"nodes": {node: result}, "pooled": result-of-the-same-shape-without-histograms,
 * "includedNodes": [...]}}; {@link #csv} flattens it to {@code scope,analysis,statistic,value} lines.
 */
public final class ResultPooling {

    private static final JsonNodeFactory F = JsonNodeFactory.instance;

    private ResultPooling() {
    }

    /** Pools the per-node results of one step (see the class comment for the shapes). */
    public static ObjectNode pool(Map<String, JsonNode> byNode) {
        ObjectNode out = F.objectNode();
        ObjectNode nodes = out.putObject("nodes");
        new TreeMap<>(byNode).forEach(nodes::set);
        out.set("includedNodes", F.arrayNode());
        String kind = byNode.values().stream().map(r -> r.path("kind").asText()).findFirst().orElse("");
        ObjectNode pooled = out.putObject("pooled").put("kind", kind);
        switch (kind) {
            case "cohort" -> {
                sumCounts(byNode, "persons", pooled);
                sumCounts(byNode, "entries", pooled);
            }
            case "variables" -> sumCounts(byNode, "entries", pooled);
            case "analysis" -> {
                ObjectNode analyses = pooled.putObject("analyses");
                Set<String> names = new LinkedHashSet<>();
                byNode.values().forEach(r -> r.path("analyses").fieldNames().forEachRemaining(names::add));
                for (String name : names) {
                    analyses.set(name, poolAnalysis(name, byNode));
                }
            }
            default -> pooled.put("error", "nothing to pool for step kind '" + kind + "'");
        }
        ArrayNode included = (ArrayNode) out.get("includedNodes");
        new TreeMap<>(byNode).keySet().forEach(included::add);
        return out;
    }

    private static void sumCounts(Map<String, JsonNode> byNode, String field, ObjectNode pooled) {
        long total = 0;
        List<String> suppressed = new ArrayList<>();
        for (var e : new TreeMap<>(byNode).entrySet()) {
            JsonNode n = e.getValue().get(field);
            if (n != null && n.isIntegralNumber()) {
                total += n.asLong();
            } else if (n != null) {
                suppressed.add(e.getKey());
            }
        }
        pooled.put(field, total);
        if (!suppressed.isEmpty()) {
            ArrayNode a = pooled.withArray("suppressedNodes");
            suppressed.forEach(a::add);
        }
    }

    private static ObjectNode poolAnalysis(String name, Map<String, JsonNode> byNode) {
        Map<String, JsonNode> results = new TreeMap<>();
        byNode.forEach((node, r) -> {
            JsonNode a = r.path("analyses").get(name);
            if (a != null) {
                results.put(node, a);
            }
        });
        JsonNode first = results.values().iterator().next();
        String kind = first.path("kind").asText();
        ObjectNode o = F.objectNode().put("kind", kind);
        if (first.has("variable")) {
            o.put("variable", first.get("variable").asText());
        }
        if (first.has("groupBy")) {
            o.put("groupBy", first.get("groupBy").asText());
        }
        List<String> suppressed = new ArrayList<>();
        switch (kind) {
            case "count" -> {
                long n = 0;
                for (var e : results.entrySet()) {
                    if (e.getValue().path("n").isIntegralNumber()) {
                        n += e.getValue().path("n").asLong();
                    } else {
                        suppressed.add(e.getKey());
                    }
                }
                o.put("n", n);
            }
            case "numeric" -> {
                TreeMap<BigDecimal, Long> merged = new TreeMap<>();
                for (var e : results.entrySet()) {
                    JsonNode h = e.getValue().get("histogram");
                    if (h == null) {
                        suppressed.add(e.getKey());
                        continue;
                    }
                    h.forEach(bin -> merged.merge(new BigDecimal(bin.get(0).asText()).stripTrailingZeros(),
                            bin.get(1).asLong(), Long::sum));
                }
                o.setAll(Statistics.numeric(merged));
            }
            case "proportion" -> {
                TreeMap<String, Long> counts = new TreeMap<>();
                Set<String> incomplete = new LinkedHashSet<>();
                long n = 0;
                for (var e : results.entrySet()) {
                    JsonNode r = e.getValue();
                    if (!r.path("n").isIntegralNumber()) {
                        suppressed.add(e.getKey());
                        continue;
                    }
                    n += r.path("n").asLong();
                    for (Iterator<Map.Entry<String, JsonNode>> it = r.path("categories").fields(); it.hasNext();) {
                        var c = it.next();
                        JsonNode count = c.getValue().path("count");
                        if (count.isIntegralNumber()) {
                            counts.merge(c.getKey(), count.asLong(), Long::sum);
                        } else {
                            counts.merge(c.getKey(), 0L, Long::sum);
                            incomplete.add(c.getKey());
                        }
                    }
                }
                o.put("n", n);
                ObjectNode cats = o.putObject("categories");
                long total = n;
                counts.forEach((k, v) -> {
                    ObjectNode c = cats.putObject(k);
                    if (incomplete.contains(k)) {
                        c.put("countAtLeast", v).put("incomplete", true);
                    } else {
                        c.put("count", v).put("proportion", total == 0 ? 0 : (double) v / total);
                    }
                });
            }
            case "tTest" -> {
                Map<String, BigDecimal[]> groups = new TreeMap<>();
                for (var e : results.entrySet()) {
                    JsonNode g = e.getValue().path("groups");
                    boolean usable = g.size() == 2;
                    for (JsonNode grp : g) {
                        usable &= grp.path("n").isIntegralNumber();
                    }
                    if (!usable) {
                        suppressed.add(e.getKey());
                        continue;
                    }
                    g.fields().forEachRemaining(f -> {
                        BigDecimal[] s = groups.computeIfAbsent(f.getKey(),
                                k -> new BigDecimal[] { BigDecimal.ZERO, BigDecimal.ZERO, BigDecimal.ZERO });
                        s[0] = s[0].add(BigDecimal.valueOf(f.getValue().path("n").asLong()));
                        s[1] = s[1].add(new BigDecimal(f.getValue().path("sum").asText()));
                        s[2] = s[2].add(new BigDecimal(f.getValue().path("sumSquares").asText()));
                    });
                }
                o.setAll(tTest(groups, 1));
            }
            case "chiSquare" -> {
                TreeMap<String, TreeMap<String, Long>> table = new TreeMap<>();
                for (var e : results.entrySet()) {
                    JsonNode t = e.getValue().path("table");
                    if (e.getValue().path("suppressed").asBoolean(false) || !t.isObject()) {
                        suppressed.add(e.getKey());
                        continue;
                    }
                    t.fields().forEachRemaining(row -> row.getValue().fields().forEachRemaining(col -> table
                            .computeIfAbsent(row.getKey(), k -> new TreeMap<>())
                            .merge(col.getKey(), col.getValue().asLong(), Long::sum)));
                }
                o.setAll(chiSquare(table, 1));
            }
            default -> o.put("error", "cannot pool analysis kind '" + kind + "'");
        }
        if (!suppressed.isEmpty()) {
            ArrayNode a = o.putArray("suppressedNodes");
            suppressed.forEach(a::add);
        }
        return o;
    }

    static ArrayNode histogramJson(TreeMap<BigDecimal, Long> h) {
        ArrayNode a = F.arrayNode();
        h.forEach((v, n) -> a.addArray().add(v.toPlainString()).add(n));
        return a;
    }

    /** Proportions of a variable's values; categories with 1 to minCell − 1 persons suppressed. */
    static ObjectNode proportion(TreeMap<String, Long> counts, int minCell) {
        ObjectNode o = F.objectNode();
        long n = counts.values().stream().mapToLong(Long::longValue).sum();
        if (n > 0 && n < minCell) {
            o.put("n", "<" + minCell);
            return o;
        }
        o.put("n", n);
        ObjectNode cats = o.putObject("categories");
        counts.forEach((k, v) -> {
            ObjectNode c = cats.putObject(k);
            if (v < minCell) {
                c.put("count", "<" + minCell);
            } else {
                c.put("count", v).put("proportion", (double) v / n);
            }
        });
        return o;
    }

    /** Welch's t-test between the two groups; a group with 1 to minCell − 1 values is suppressed and no test is run. */
    static ObjectNode tTest(Map<String, BigDecimal[]> groups, int minCell) {
        ObjectNode o = F.objectNode();
        ObjectNode g = o.putObject("groups");
        boolean suppressed = false;
        for (var e : groups.entrySet()) {
            long n = e.getValue()[0].longValue();
            ObjectNode s = g.putObject(e.getKey());
            if (n < minCell) {
                s.put("n", "<" + minCell);
                suppressed = true;
            } else {
                s.put("n", n).put("sum", e.getValue()[1].stripTrailingZeros().toPlainString())
                        .put("sumSquares", e.getValue()[2].stripTrailingZeros().toPlainString())
                        .put("mean", e.getValue()[1].divide(e.getValue()[0], Statistics.MC).doubleValue());
            }
        }
        if (groups.size() != 2) {
            o.put("error", "a t-test needs exactly 2 groups, the grouping variable has " + groups.size());
        } else if (suppressed) {
            o.put("suppressed", true);
        } else {
            var it = groups.values().iterator();
            BigDecimal[] a = it.next();
            BigDecimal[] b = it.next();
            o.setAll(Statistics.welch(a[0].longValue(), a[1], a[2], b[0].longValue(), b[1], b[2]));
        }
        return o;
    }

    /** Chi-square test; if any cell holds 1 to minCell − 1 persons, those cells are suppressed and no test is run. */
    static ObjectNode chiSquare(TreeMap<String, TreeMap<String, Long>> table, int minCell) {
        ObjectNode o = F.objectNode();
        ObjectNode t = o.putObject("table");
        boolean suppressed = false;
        for (var row : table.entrySet()) {
            ObjectNode r = t.putObject(row.getKey());
            for (var c : row.getValue().entrySet()) {
                if (c.getValue() > 0 && c.getValue() < minCell) {
                    r.put(c.getKey(), "<" + minCell);
                    suppressed = true;
                } else {
                    r.put(c.getKey(), c.getValue());
                }
            }
        }
        if (suppressed) {
            o.put("suppressed", true);
        } else {
            o.setAll(Statistics.chiSquare(table));
        }
        return o;
    }

    /** The per-node and pooled figures of {@link #pool}'s output as CSV: scope,analysis,statistic,value. */
    public static String csv(ObjectNode pooledOutput) {
        StringBuilder sb = new StringBuilder("scope,analysis,statistic,value\n");
        pooledOutput.path("nodes").fields().forEachRemaining(e -> flatten(sb, e.getKey(), e.getValue()));
        flatten(sb, "pooled", pooledOutput.path("pooled"));
        return sb.toString();
    }

    private static void flatten(StringBuilder sb, String scope, JsonNode result) {
        if (result.has("analyses")) {
            result.get("analyses").fields().forEachRemaining(a -> walk(sb, scope, a.getKey(), "", a.getValue()));
        } else {
            walk(sb, scope, result.path("kind").asText(), "", result);
        }
    }

    private static void walk(StringBuilder sb, String scope, String analysis, String prefix, JsonNode node) {
        node.fields().forEachRemaining(f -> {
            String key = prefix.isEmpty() ? f.getKey() : prefix + "." + f.getKey();
            JsonNode v = f.getValue();
            if (f.getKey().equals("histogram") || f.getKey().equals("rows")) {
                return;
            }
            if (v.isObject()) {
                walk(sb, scope, analysis, key, v);
            } else if (!v.isArray() && !f.getKey().equals("kind")) {
                sb.append(cell(scope)).append(',').append(cell(analysis)).append(',').append(cell(key)).append(',')
                        .append(cell(v.asText())).append('\n');
            }
        });
    }

    private static String cell(String s) {
        return s.contains(",") || s.contains("\"") || s.contains("\n") ? '"' + s.replace("\"", "\"\"") + '"' : s;
    }
}
