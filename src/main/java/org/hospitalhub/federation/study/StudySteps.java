package org.hospitalhub.federation.study;

import java.math.BigDecimal;
import java.nio.charset.StandardCharsets;
import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Timestamp;
import java.time.Instant;
import java.time.LocalDate;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.TreeMap;

import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;

import org.hospitalhub.delivery.Database;
import org.hospitalhub.federation.StepContext;
import org.hospitalhub.federation.StepDefinitionException;
import org.hospitalhub.federation.StepExecutor;

import javax.sql.DataSource;

/**
 * Executes study steps on a node's OMOP CDM schema and keeps their results in
 * the hub database, keyed by (project, step): cohort members, variable values, and the output sent to the initiator.
 * Each execution first removes what an earlier attempt of the same step left, in the same transaction, so executing a
 * step again gives the same result and no leftovers.
 * <p>
 * What leaves the node (the returned JSON): counts, sufficient statistics (exact decimal sums, value histograms,
 * contingency tables) and statistics derived from them, with every count of 1 to {@code hub.federation.min-cell-count}
 * − 1 replaced by {@code "<k"} and left out of the derived figures; patient-level rows only if the project's sharing
 * level is {@code de-identified-rows}, and then de-identified ({@link #deidentified}).
 */
public final class StudySteps implements StepExecutor {

    private static final ObjectMapper JSON = new ObjectMapper();

    private final DataSource dataSource;
    private final String cdmSchema;
    private final int minCell;
    private final Optional<String> pseudonymKey;
    private final int maxDateShift;
    private final int ageBand;

    /**
     * @param cdmSchema    the node's OMOP CDM schema (in the same PostgreSQL database as the result tables)
     * @param minCell      counts from 1 to minCell − 1 are suppressed
     * @param pseudonymKey HMAC key of de-identified rows' pseudonyms (empty: such steps fail)
     */
    public StudySteps(DataSource dataSource, String cdmSchema, int minCell, Optional<String> pseudonymKey,
            int maxDateShift, int ageBand) {
        this.dataSource = dataSource;
        this.cdmSchema = cdmSchema;
        this.minCell = Math.max(1, minCell);
        this.pseudonymKey = pseudonymKey.filter(k -> !k.isBlank());
        this.maxDateShift = Math.max(0, maxDateShift);
        this.ageBand = Math.max(1, ageBand);
    }

    private <T> T inTransaction(Database.SqlWork<T> work) throws SQLException {
        return Database.inTransaction(dataSource, work);
    }

    @Override
    public JsonNode execute(StepContext step) throws Exception {
        StudyCompiler compiler = new StudyCompiler(cdmSchema);
        JsonNode def = step.definition();
        ObjectNode out = switch (step.kind() == null ? "" : step.kind()) {
            case "cohort" -> {
                StudyCompiler.Compiled sql = compiler.cohort(def);
                yield inTransaction(c -> cohort(c, step, sql));
            }
            case "variables" -> {
                List<StudyCompiler.Variable> vars = compiler.variables(def);
                String cohort = dependency(step, "cohort");
                long ran = inTransaction(c -> count(c, "SELECT COUNT(*) FROM study_step_output WHERE project_id = ?"
                        + " AND step_id = ? AND kind = 'cohort'", step.projectId(), cohort));
                if (ran == 0) {
                    throw new StepDefinitionException("dependsOn.cohort", "cohort step " + cohort + " has not run on this node");
                }
                yield inTransaction(c -> variables(c, step, cohort, vars));
            }
            case "analysis" -> {
                String variables = dependency(step, "variables");
                Set<String> known = variableNames(step.projectId(), variables);
                AnalysisPlan plan = AnalysisPlan.parse(def, known);
                yield inTransaction(c -> analysis(c, step, variables, plan));
            }
            default -> throw new StepDefinitionException("kind", "unknown step kind '" + step.kind()
                    + "' (allowed: cohort, variables, analysis)");
        };
        return out;
    }

    @Override
    public void clean(String projectId, String stepId) throws SQLException {
        inTransaction(c -> {
            delete(c, projectId, stepId);
            return null;
        });
    }

    private static void delete(Connection c, String projectId, String stepId) throws SQLException {
        for (String t : List.of("study_cohort_member", "study_variable_value", "study_step_output")) {
            try (PreparedStatement ps = c.prepareStatement("DELETE FROM " + t + " WHERE project_id = ? AND step_id = ?")) {
                ps.setString(1, projectId);
                ps.setString(2, stepId);
                ps.executeUpdate();
            }
        }
    }

    private static String dependency(StepContext step, String role) throws StepDefinitionException {
        String id = step.dependsOn() == null ? null : step.dependsOn().get(role);
        if (id == null || id.isBlank()) {
            throw new StepDefinitionException("dependsOn." + role, "a " + step.kind() + " step needs the id of its " + role + " step");
        }
        return id;
    }

    private ObjectNode cohort(Connection c, StepContext step, StudyCompiler.Compiled sql) throws SQLException {
        delete(c, step.projectId(), step.stepId());
        try (PreparedStatement ps = c.prepareStatement("INSERT INTO study_cohort_member (project_id, step_id, person_id,"
                + " index_date) SELECT ?, ?, q.person_id, q.index_date FROM (" + sql.sql() + ") q")) {
            ps.setString(1, step.projectId());
            ps.setString(2, step.stepId());
            bind(c, ps, 3, sql.params());
            ps.executeUpdate();
        }
        long persons = count(c, "SELECT COUNT(DISTINCT person_id) FROM study_cohort_member WHERE project_id = ? AND step_id = ?",
                step.projectId(), step.stepId());
        long entries = count(c, "SELECT COUNT(*) FROM study_cohort_member WHERE project_id = ? AND step_id = ?",
                step.projectId(), step.stepId());
        ObjectNode out = JSON.createObjectNode().put("kind", "cohort").put("minCellCount", minCell);
        putCount(out, "persons", persons);
        putCount(out, "entries", entries);
        save(c, step, out);
        return out;
    }

    private ObjectNode variables(Connection c, StepContext step, String cohortStep, List<StudyCompiler.Variable> vars)
            throws SQLException {
        long members = count(c, "SELECT COUNT(*) FROM study_cohort_member WHERE project_id = ? AND step_id = ?",
                step.projectId(), cohortStep);
        delete(c, step.projectId(), step.stepId());
        ObjectNode out = JSON.createObjectNode().put("kind", "variables").put("minCellCount", minCell);
        ArrayNode list = out.putArray("variables");
        for (StudyCompiler.Variable v : vars) {
            String num = v.numeric() == null ? "NULL" : v.numeric().sql();
            String text = v.text() == null ? "NULL" : v.text().sql();
            // the values stored and how many are not missing, one statement (no second scan, no second round trip)
            long nonMissing;
            try (PreparedStatement ps = c.prepareStatement("WITH stored AS (INSERT INTO study_variable_value (project_id, step_id,"
                    + " name, person_id, index_date, num_value, text_value) SELECT ?, ?, ?, m.person_id, m.index_date, " + num
                    + ", " + text + " FROM study_cohort_member m WHERE m.project_id = ? AND m.step_id = ?"
                    + " RETURNING num_value IS NOT NULL OR text_value IS NOT NULL AS present)"
                    + " SELECT COUNT(*) FILTER (WHERE present) FROM stored")) {
                int i = 1;
                ps.setString(i++, step.projectId());
                ps.setString(i++, step.stepId());
                ps.setString(i++, v.name());
                if (v.numeric() != null) {
                    i = bind(c, ps, i, v.numeric().params());
                }
                if (v.text() != null) {
                    i = bind(c, ps, i, v.text().params());
                }
                ps.setString(i++, step.projectId());
                ps.setString(i, cohortStep);
                try (ResultSet rs = ps.executeQuery()) {
                    rs.next();
                    nonMissing = rs.getLong(1);
                }
            }
            ObjectNode o = list.addObject().put("name", v.name()).put("kind", v.kind());
            putCount(o, "nonMissing", nonMissing);
        }
        putCount(out, "entries", members);
        if ("de-identified-rows".equals(step.sharingLevel())) {
            out.set("rows", deidentified(c, step, vars));
        }
        save(c, step, out);
        return out;
    }

    /**
     * The variables as de-identified rows: the person id replaced by a per-project pseudonym (HMAC-SHA256 of project
     * and person under {@code hub.federation.pseudonym-key}), the index date shifted by a per-person, per-project
     * number of days within ± {@code rows.max-date-shift-days}, ages banded ({@code rows.age-band-years}), and values
     * of categorical variables held by fewer than min-cell-count persons generalised to "other". No other column.
     */
    private ArrayNode deidentified(Connection c, StepContext step, List<StudyCompiler.Variable> vars) throws SQLException {
        String key = pseudonymKey.orElseThrow(() -> new IllegalStateException(
                "the project shares de-identified rows but this node has no pseudonym key: set HUB_FEDERATION_PSEUDONYM_KEY"));
        Map<String, Map<String, Long>> categoryCounts = new HashMap<>();
        Map<String, String> kinds = new HashMap<>();
        vars.forEach(v -> kinds.put(v.name(), v.kind()));
        try (PreparedStatement ps = c.prepareStatement("SELECT name, text_value, COUNT(*) FROM study_variable_value WHERE"
                + " project_id = ? AND step_id = ? AND text_value IS NOT NULL GROUP BY name, text_value")) {
            ps.setString(1, step.projectId());
            ps.setString(2, step.stepId());
            try (ResultSet rs = ps.executeQuery()) {
                while (rs.next()) {
                    categoryCounts.computeIfAbsent(rs.getString(1), n -> new HashMap<>()).put(rs.getString(2), rs.getLong(3));
                }
            }
        }
        Map<String, ObjectNode> rows = new TreeMap<>();
        try (PreparedStatement ps = c.prepareStatement("SELECT person_id, index_date, name, num_value, text_value FROM"
                + " study_variable_value WHERE project_id = ? AND step_id = ? ORDER BY person_id, index_date, name")) {
            ps.setString(1, step.projectId());
            ps.setString(2, step.stepId());
            try (ResultSet rs = ps.executeQuery()) {
                while (rs.next()) {
                    long person = rs.getLong(1);
                    LocalDate index = rs.getDate(2).toLocalDate();
                    byte[] mac = hmac(key, step.projectId() + ":" + person);
                    String pseudonym = java.util.HexFormat.of().formatHex(mac, 0, 8);
                    int shift = maxDateShift == 0 ? 0 : Math.floorMod(((mac[8] & 0xff) << 8) | (mac[9] & 0xff), 2 * maxDateShift + 1) - maxDateShift;
                    ObjectNode row = rows.computeIfAbsent(pseudonym + "/" + index, k -> {
                        ObjectNode r = JSON.createObjectNode();
                        r.put("pseudonym", pseudonym);
                        r.put("indexDate", index.plusDays(shift).toString());
                        return r;
                    });
                    String name = rs.getString(3);
                    BigDecimal num = rs.getBigDecimal(4);
                    String text = rs.getString(5);
                    if ("ageAtIndex".equals(kinds.get(name)) && num != null) {
                        int lo = num.intValue() / ageBand * ageBand;
                        row.put(name, lo + "-" + (lo + ageBand - 1));
                    } else if (text != null) {
                        long n = categoryCounts.getOrDefault(name, Map.of()).getOrDefault(text, 0L);
                        row.put(name, n < minCell ? "other" : text);
                    } else if (num != null) {
                        row.put(name, num.stripTrailingZeros());
                    } else {
                        row.putNull(name);
                    }
                }
            }
        }
        ArrayNode out = JSON.createArrayNode();
        rows.values().forEach(out::add);
        return out;
    }

    private static byte[] hmac(String key, String value) {
        try {
            Mac mac = Mac.getInstance("HmacSHA256");
            mac.init(new SecretKeySpec(key.getBytes(StandardCharsets.UTF_8), "HmacSHA256"));
            return mac.doFinal(value.getBytes(StandardCharsets.UTF_8));
        } catch (java.security.GeneralSecurityException e) {
            throw new IllegalStateException(e);
        }
    }

    private Set<String> variableNames(String projectId, String variablesStep) throws SQLException, StepDefinitionException {
        String output = inTransaction(c -> {
            try (PreparedStatement ps = c.prepareStatement("SELECT result FROM study_step_output WHERE project_id = ? AND step_id = ?"
                    + " AND kind = 'variables'")) {
                ps.setString(1, projectId);
                ps.setString(2, variablesStep);
                try (ResultSet rs = ps.executeQuery()) {
                    return rs.next() ? rs.getString(1) : null;
                }
            }
        });
        if (output == null) {
            throw new StepDefinitionException("dependsOn.variables", "variables step " + variablesStep + " has not run on this node");
        }
        Set<String> names = new HashSet<>();
        try {
            JSON.readTree(output).path("variables").forEach(v -> names.add(v.path("name").asText()));
        } catch (java.io.IOException e) {
            throw new IllegalStateException(e);
        }
        return names;
    }

    private ObjectNode analysis(Connection c, StepContext step, String varStep, AnalysisPlan plan) throws SQLException {
        delete(c, step.projectId(), step.stepId());
        ObjectNode out = JSON.createObjectNode().put("kind", "analysis").put("minCellCount", minCell);
        ObjectNode results = out.putObject("analyses");
        String p = step.projectId();
        for (AnalysisPlan.Analysis a : plan.analyses()) {
            ObjectNode r = results.putObject(a.name()).put("kind", a.kind());
            if (a.variable() != null) {
                r.put("variable", a.variable());
            }
            if (a.groupBy() != null) {
                r.put("groupBy", a.groupBy());
            }
            switch (a.kind()) {
                case "count" -> putCount(r, "n", count(c, "SELECT COUNT(DISTINCT person_id) FROM study_variable_value"
                        + " WHERE project_id = ? AND step_id = ?", p, varStep));
                case "numeric" -> {
                    TreeMap<BigDecimal, Long> h = histogram(c, p, varStep, a.variable());
                    long n = h.values().stream().mapToLong(Long::longValue).sum();
                    if (small(n)) {
                        r.put("n", "<" + minCell);
                    } else {
                        r.setAll(Statistics.numeric(h));
                        r.set("histogram", ResultPooling.histogramJson(h));
                    }
                }
                case "proportion" -> r.setAll(ResultPooling.proportion(categories(c, p, varStep, a.variable()), minCell));
                case "tTest" -> {
                    Map<String, BigDecimal[]> groups = groupSums(c, p, varStep, a.variable(), a.groupBy());
                    r.setAll(ResultPooling.tTest(groups, minCell));
                }
                case "chiSquare" -> r.setAll(ResultPooling.chiSquare(table(c, p, varStep, a.variable(), a.groupBy()), minCell));
                default -> throw new IllegalStateException(a.kind());
            }
        }
        save(c, step, out);
        return out;
    }

    private boolean small(long n) {
        return n > 0 && n < minCell;
    }

    private void putCount(ObjectNode o, String field, long n) {
        if (small(n)) {
            o.put(field, "<" + minCell);
        } else {
            o.put(field, n);
        }
    }

    private static TreeMap<BigDecimal, Long> histogram(Connection c, String project, String step, String name) throws SQLException {
        TreeMap<BigDecimal, Long> h = new TreeMap<>();
        try (PreparedStatement ps = c.prepareStatement("SELECT num_value, COUNT(*) FROM study_variable_value WHERE project_id = ?"
                + " AND step_id = ? AND name = ? AND num_value IS NOT NULL GROUP BY num_value")) {
            ps.setString(1, project);
            ps.setString(2, step);
            ps.setString(3, name);
            try (ResultSet rs = ps.executeQuery()) {
                while (rs.next()) {
                    h.merge(rs.getBigDecimal(1).stripTrailingZeros(), rs.getLong(2), Long::sum);
                }
            }
        }
        return h;
    }

    static String category(String text, BigDecimal num) {
        return text != null ? text : num != null ? num.stripTrailingZeros().toPlainString() : "missing";
    }

    private static TreeMap<String, Long> categories(Connection c, String project, String step, String name) throws SQLException {
        TreeMap<String, Long> counts = new TreeMap<>();
        try (PreparedStatement ps = c.prepareStatement("SELECT text_value, num_value, COUNT(*) FROM study_variable_value"
                + " WHERE project_id = ? AND step_id = ? AND name = ? GROUP BY text_value, num_value")) {
            ps.setString(1, project);
            ps.setString(2, step);
            ps.setString(3, name);
            try (ResultSet rs = ps.executeQuery()) {
                while (rs.next()) {
                    counts.merge(category(rs.getString(1), rs.getBigDecimal(2)), rs.getLong(3), Long::sum);
                }
            }
        }
        return counts;
    }

    /** Per value of groupBy: {n, Σx, Σx²} of the numeric variable. */
    private static Map<String, BigDecimal[]> groupSums(Connection c, String project, String step, String variable,
            String groupBy) throws SQLException {
        Map<String, BigDecimal[]> groups = new TreeMap<>();
        try (PreparedStatement ps = c.prepareStatement("SELECT gt, gn, COUNT(*), SUM(vn), SUM(vn * vn) FROM " + PAIRS
                + " WHERE vn IS NOT NULL AND (gt IS NOT NULL OR gn IS NOT NULL) GROUP BY gt, gn")) {
            pairs(ps, project, step, variable, groupBy);
            try (ResultSet rs = ps.executeQuery()) {
                while (rs.next()) {
                    BigDecimal[] s = groups.computeIfAbsent(category(rs.getString(1), rs.getBigDecimal(2)),
                            k -> new BigDecimal[] { BigDecimal.ZERO, BigDecimal.ZERO, BigDecimal.ZERO });
                    s[0] = s[0].add(BigDecimal.valueOf(rs.getLong(3)));
                    s[1] = s[1].add(rs.getBigDecimal(4));
                    s[2] = s[2].add(rs.getBigDecimal(5));
                }
            }
        }
        return groups;
    }

    private static TreeMap<String, TreeMap<String, Long>> table(Connection c, String project, String step, String variable,
            String groupBy) throws SQLException {
        TreeMap<String, TreeMap<String, Long>> t = new TreeMap<>();
        try (PreparedStatement ps = c.prepareStatement("SELECT vt, vn, gt, gn, COUNT(*) FROM " + PAIRS
                + " WHERE (vt IS NOT NULL OR vn IS NOT NULL) AND (gt IS NOT NULL OR gn IS NOT NULL) GROUP BY vt, vn, gt, gn")) {
            pairs(ps, project, step, variable, groupBy);
            try (ResultSet rs = ps.executeQuery()) {
                while (rs.next()) {
                    t.computeIfAbsent(category(rs.getString(1), rs.getBigDecimal(2)), k -> new TreeMap<>())
                            .merge(category(rs.getString(3), rs.getBigDecimal(4)), rs.getLong(5), Long::sum);
                }
            }
        }
        return t;
    }

    /**
     * A variable and its grouping variable side by side, one row per cohort entry (person and index date) that has
     * either, read in one scan of the step's rows. Not a self-join: with the statistics of a table that held other
     * projects' rows when last analysed, PostgreSQL estimates one row for a new step and joins the two variables of a
     * 100,000-person cohort by a nested loop that matches every row with every row (still running after 10 minutes at
     * 1,000,000 persons).
     * Grouping the step's rows stays linear whatever the estimate, so no ANALYZE is needed after a step.
     */
    private static final String PAIRS = "(SELECT MAX(text_value) FILTER (WHERE name = ?) AS vt,"
            + " MAX(num_value) FILTER (WHERE name = ?) AS vn, MAX(text_value) FILTER (WHERE name = ?) AS gt,"
            + " MAX(num_value) FILTER (WHERE name = ?) AS gn FROM study_variable_value WHERE project_id = ? AND step_id = ?"
            + " AND name IN (?, ?) GROUP BY person_id, index_date) pair";

    private static void pairs(PreparedStatement ps, String project, String step, String variable, String groupBy)
            throws SQLException {
        ps.setString(1, variable);
        ps.setString(2, variable);
        ps.setString(3, groupBy);
        ps.setString(4, groupBy);
        ps.setString(5, project);
        ps.setString(6, step);
        ps.setString(7, variable);
        ps.setString(8, groupBy);
    }

    private static void save(Connection c, StepContext step, ObjectNode out) throws SQLException {
        try (PreparedStatement ps = c.prepareStatement("INSERT INTO study_step_output (project_id, step_id, kind, result,"
                + " executed_at) VALUES (?, ?, ?, ?, ?)")) {
            ps.setString(1, step.projectId());
            ps.setString(2, step.stepId());
            ps.setString(3, step.kind());
            ps.setString(4, out.toString());
            ps.setTimestamp(5, Timestamp.from(Instant.now()));
            ps.executeUpdate();
        }
    }

    private static long count(Connection c, String sql, String... params) throws SQLException {
        try (PreparedStatement ps = c.prepareStatement(sql)) {
            for (int i = 0; i < params.length; i++) {
                ps.setString(i + 1, params[i]);
            }
            try (ResultSet rs = ps.executeQuery()) {
                rs.next();
                return rs.getLong(1);
            }
        }
    }

    private static int bind(Connection c, PreparedStatement ps, int from, List<Object> params) throws SQLException {
        int i = from;
        for (Object o : params) {
            if (o instanceof Integer[] ints) {
                ps.setArray(i++, c.createArrayOf("integer", ints));
            } else {
                ps.setObject(i++, o);
            }
        }
        return i;
    }
}
