package org.hospitalhub.federation.study;

import java.sql.Date;
import java.time.LocalDate;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;

import com.fasterxml.jackson.databind.JsonNode;

import org.hospitalhub.federation.StepDefinitionException;
import org.hospitalhub.federation.cdm.CdmSchema;
import org.hospitalhub.federation.cdm.SyntheticCdm;

/**
 * Compiles versioned study definitions (JSON) into parameterised SQL on the node's OMOP CDM schema. Every value of a
 * definition is a bound parameter; every identifier comes from {@link Domain} or from this class; the schema name is
 * configuration checked by {@link CdmSchema#checkName}. A definition that is invalid, or tries anything else, is
 * rejected with a {@link StepDefinitionException} naming the JSON path of the offending field.
 * <p>
 * Cohort definition (version 1):
 * <pre>
 * {"version": 1,
 *  "entry": {criterion},                    index event: an occurrence of the concept set (the person's first only
 *  "firstEventOnly": true,                  if firstEventOnly, the default)
 *  "priorObservationDays": 365,             observation required before the index date
 *  "age": {"min": 18, "max": 90},           at the index date (years)
 *  "gender": ["male", "female"],
 *  "indexDateRange": {"from": "2016-01-01", "to": "2025-12-31"},
 *  "inclusion": [{criterion with window}],  each must occur in its window around the index date
 *  "exclusion": [{criterion with window}]}  none may occur in its window
 * criterion: {"domain": "condition|drug|procedure|measurement|observation|visit",
 *             "conceptSet": {"concepts": [201820], "includeDescendants": true},
 *             "value": {"min": 7.0, "max": 20},      measurement/observation only
 *             "window": {"startDays": -365, "endDays": 0}}   days relative to the index date
 * </pre>
 * Variables definition: {@code {"version": 1, "variables": [{"name": "age", "kind": "ageAtIndex"}, {"name": "sex",
 * "kind": "gender"}, {"name": "htn", "kind": "presence", "criterion": {...}}, {"name": "visits", "kind": "count",
 * "criterion": {...}}, {"name": "hba1c", "kind": "measurementValue", "statistic": "first|last|min|max", "criterion":
 * {...}}]}}. Analysis definitions are read by {@link AnalysisPlan}.
 */
public final class StudyCompiler {

    /** SQL text and its parameters, in order. */
    public record Compiled(String sql, List<Object> params) {
    }

    private static final Set<String> COHORT_FIELDS = Set.of("version", "entry", "firstEventOnly", "priorObservationDays",
            "age", "gender", "indexDateRange", "inclusion", "exclusion");
    private static final Set<String> CRITERION_FIELDS = Set.of("domain", "conceptSet", "value", "window");
    private static final int MAX_CRITERIA = 20;
    private static final int MAX_CONCEPTS = 500;

    private final String cdm;

    public StudyCompiler(String cdmSchema) {
        this.cdm = CdmSchema.checkName(cdmSchema);
    }

    /** SELECT person_id, index_date of the cohort (one row per person and index date). */
    public Compiled cohort(JsonNode def) throws StepDefinitionException {
        Json.object(def, "$", COHORT_FIELDS);
        Json.version(def, "$");
        List<Object> p = new ArrayList<>();
        StringBuilder sql = new StringBuilder();
        JsonNode entry = def.get("entry");
        if (entry == null) {
            throw new StepDefinitionException("$.entry", "is required (the index event)");
        }
        Criterion e = criterion(entry, "$.entry", false);
        sql.append("WITH entry AS (SELECT x.person_id, x.").append(e.domain.dateColumn).append(" AS index_date, ROW_NUMBER() OVER (PARTITION BY x.person_id ORDER BY x.")
                .append(e.domain.dateColumn).append(", x.").append(e.domain.idColumn).append(") AS rn FROM ")
                .append(cdm).append('.').append(e.domain.table).append(" x WHERE ");
        e.conditions(sql, p, cdm, false);
        sql.append(")\nSELECT DISTINCT r.person_id, r.index_date FROM entry r JOIN ").append(cdm)
                .append(".person p ON p.person_id = r.person_id JOIN ").append(cdm)
                .append(".observation_period op ON op.person_id = r.person_id AND r.index_date BETWEEN"
                        + " op.observation_period_start_date AND op.observation_period_end_date WHERE 1 = 1");
        if (Json.bool(def, "firstEventOnly", "$", true)) {
            sql.append(" AND r.rn = 1");
        }
        Integer prior = Json.integer(def, "priorObservationDays", "$", false, 0, 36_500);
        if (prior != null && prior > 0) {
            sql.append(" AND r.index_date - op.observation_period_start_date >= ?");
            p.add(prior);
        }
        JsonNode age = def.get("age");
        if (age != null) {
            Json.object(age, "$.age", Set.of("min", "max"));
            Integer min = Json.integer(age, "min", "$.age", false, 0, 150);
            Integer max = Json.integer(age, "max", "$.age", false, 0, 150);
            if (min != null && max != null && min > max) {
                throw new StepDefinitionException("$.age", "min " + min + " is above max " + max);
            }
            if (min != null) {
                sql.append(" AND EXTRACT(YEAR FROM r.index_date) - p.year_of_birth >= ?");
                p.add(min);
            }
            if (max != null) {
                sql.append(" AND EXTRACT(YEAR FROM r.index_date) - p.year_of_birth <= ?");
                p.add(max);
            }
        }
        JsonNode gender = def.get("gender");
        if (gender != null) {
            Json.array(gender, "$.gender", 1, 2);
            List<Integer> ids = new ArrayList<>();
            for (int i = 0; i < gender.size(); i++) {
                String g = gender.get(i).isTextual() ? gender.get(i).asText() : "";
                switch (g) {
                    case "male" -> ids.add(SyntheticCdm.MALE);
                    case "female" -> ids.add(SyntheticCdm.FEMALE);
                    default -> throw new StepDefinitionException("$.gender[" + i + "]", "must be \"male\" or \"female\"");
                }
            }
            sql.append(" AND p.gender_concept_id = ANY(?)");
            p.add(ids.toArray(Integer[]::new));
        }
        JsonNode range = def.get("indexDateRange");
        if (range != null) {
            Json.object(range, "$.indexDateRange", Set.of("from", "to"));
            LocalDate from = Json.date(range, "from", "$.indexDateRange");
            LocalDate to = Json.date(range, "to", "$.indexDateRange");
            if (from != null && to != null && from.isAfter(to)) {
                throw new StepDefinitionException("$.indexDateRange", "from is after to");
            }
            if (from != null) {
                sql.append(" AND r.index_date >= ?");
                p.add(Date.valueOf(from));
            }
            if (to != null) {
                sql.append(" AND r.index_date <= ?");
                p.add(Date.valueOf(to));
            }
        }
        for (String kind : List.of("inclusion", "exclusion")) {
            JsonNode list = def.get(kind);
            if (list == null) {
                continue;
            }
            Json.array(list, "$." + kind, 0, MAX_CRITERIA);
            for (int i = 0; i < list.size(); i++) {
                Criterion c = criterion(list.get(i), "$." + kind + "[" + i + "]", true);
                sql.append(kind.equals("inclusion") ? " AND EXISTS (" : " AND NOT EXISTS (");
                c.exists(sql, p, cdm, "r");
                sql.append(')');
            }
        }
        return new Compiled(sql.toString(), p);
    }

    /** One variable: how its value is computed for each cohort member (SQL expressions on member row {@code m}). */
    public record Variable(String name, String kind, Compiled numeric, Compiled text) {
    }

    /** The variables of a variables definition, in order; names are unique. */
    public List<Variable> variables(JsonNode def) throws StepDefinitionException {
        Json.object(def, "$", Set.of("version", "variables"));
        Json.version(def, "$");
        JsonNode list = Json.array(def.get("variables"), "$.variables", 1, 100);
        List<Variable> out = new ArrayList<>();
        Set<String> names = new HashSet<>();
        for (int i = 0; i < list.size(); i++) {
            String path = "$.variables[" + i + "]";
            JsonNode v = Json.object(list.get(i), path, Set.of("name", "kind", "criterion", "statistic"));
            String name = Json.name(v, "name", path);
            if (!names.add(name)) {
                throw new StepDefinitionException(path + ".name", "duplicate variable name '" + name + "'");
            }
            String kind = Json.text(v, "kind", path, true);
            switch (kind) {
                case "ageAtIndex" -> {
                    noCriterion(v, path);
                    out.add(new Variable(name, kind, new Compiled("(SELECT EXTRACT(YEAR FROM m.index_date) - p.year_of_birth FROM "
                            + cdm + ".person p WHERE p.person_id = m.person_id)", List.of()), null));
                }
                case "gender" -> {
                    noCriterion(v, path);
                    out.add(new Variable(name, kind, null, new Compiled("(SELECT CASE p.gender_concept_id WHEN "
                            + SyntheticCdm.MALE + " THEN 'male' WHEN " + SyntheticCdm.FEMALE
                            + " THEN 'female' ELSE 'unknown' END FROM " + cdm + ".person p WHERE p.person_id = m.person_id)",
                            List.of())));
                }
                case "presence", "count" -> {
                    Criterion c = criterion(v.get("criterion"), path + ".criterion", true);
                    StringBuilder sql = new StringBuilder();
                    List<Object> p = new ArrayList<>();
                    sql.append(kind.equals("presence") ? "(CASE WHEN EXISTS (" : "(SELECT COUNT(*) FROM (");
                    c.exists(sql, p, cdm, "m");
                    sql.append(kind.equals("presence") ? ") THEN 1 ELSE 0 END)" : ") n)");
                    out.add(new Variable(name, kind, new Compiled(sql.toString(), p), null));
                }
                case "measurementValue" -> {
                    Criterion c = criterion(v.get("criterion"), path + ".criterion", true);
                    if (c.domain.valueColumn == null) {
                        throw new StepDefinitionException(path + ".criterion.domain", "measurementValue needs a domain with values (measurement or observation)");
                    }
                    String stat = Json.text(v, "statistic", path, true);
                    String select = switch (stat) {
                        case "first" -> "x." + c.domain.valueColumn;
                        case "last" -> "x." + c.domain.valueColumn;
                        case "min" -> "MIN(x." + c.domain.valueColumn + ")";
                        case "max" -> "MAX(x." + c.domain.valueColumn + ")";
                        default -> throw new StepDefinitionException(path + ".statistic", "must be first, last, min or max");
                    };
                    StringBuilder sql = new StringBuilder("(SELECT ").append(select);
                    List<Object> p = new ArrayList<>();
                    c.from(sql, p, cdm, "m");
                    sql.append(" AND x.").append(c.domain.valueColumn).append(" IS NOT NULL");
                    if (stat.equals("first") || stat.equals("last")) {
                        String dir = stat.equals("first") ? " ASC" : " DESC";
                        sql.append(" ORDER BY x.").append(c.domain.dateColumn).append(dir).append(", x.")
                                .append(c.domain.idColumn).append(dir).append(" LIMIT 1");
                    }
                    sql.append(')');
                    out.add(new Variable(name, kind, new Compiled(sql.toString(), p), null));
                }
                default -> throw new StepDefinitionException(path + ".kind",
                        "unknown variable kind '" + kind + "' (allowed: ageAtIndex, gender, presence, count, measurementValue)");
            }
        }
        return out;
    }

    private static void noCriterion(JsonNode v, String path) throws StepDefinitionException {
        if (v.has("criterion") || v.has("statistic")) {
            throw new StepDefinitionException(path + (v.has("criterion") ? ".criterion" : ".statistic"),
                    "not allowed for kind " + v.get("kind").asText());
        }
    }

    /** A parsed criterion: domain, concepts, optional value range and window. */
    static final class Criterion {
        Domain domain;
        Integer[] concepts;
        boolean descendants;
        Double min;
        Double max;
        Integer start;
        Integer end;

        /**
         * WHERE conditions on row x (concepts and value). {@code perMember}: x is read once per cohort member (a
         * correlated subquery), where a concept set with descendants is written as {@code (… IN (SELECT …)) IS TRUE}:
         * PostgreSQL then hashes the set once per statement (a hashed SubPlan) instead of joining concept_ancestor again
         * for every row of every member (one variable of a 101,813-person cohort: 4.6 s → 0.5-0.7 s), and unlike
         * {@code = ANY(ARRAY(SELECT …))}, as fast for a small set, a large one costs no more per row (1,000
         * descendants: 1.3 s against 3.1 s joined and 4.6 s as an array). A single scan (the cohort's entry) keeps the
         * plain IN, planned as a hash join (the array made it 1.9 s instead of 0.2 s with 1,000 descendants).
         */
        void conditions(StringBuilder sql, List<Object> p, String cdm, boolean perMember) {
            if (descendants) {
                sql.append(perMember ? "(" : "").append("x.").append(domain.conceptColumn)
                        .append(" IN (SELECT ca.descendant_concept_id FROM ").append(cdm)
                        .append(".concept_ancestor ca WHERE ca.ancestor_concept_id = ANY(?))").append(perMember ? ") IS TRUE" : "");
            } else {
                sql.append("x.").append(domain.conceptColumn).append(" = ANY(?)");
            }
            p.add(concepts);
            if (min != null) {
                sql.append(" AND x.").append(domain.valueColumn).append(" >= ?");
                p.add(min);
            }
            if (max != null) {
                sql.append(" AND x.").append(domain.valueColumn).append(" <= ?");
                p.add(max);
            }
        }

        /** FROM ... WHERE, matching the person and window of row {@code alias} (person_id, index_date). */
        void from(StringBuilder sql, List<Object> p, String cdm, String alias) {
            sql.append(" FROM ").append(cdm).append('.').append(domain.table).append(" x WHERE x.person_id = ")
                    .append(alias).append(".person_id AND ");
            conditions(sql, p, cdm, true);
            if (start != null) {
                sql.append(" AND x.").append(domain.dateColumn).append(" >= ").append(alias).append(".index_date + CAST(? AS integer)");
                p.add(start);
            }
            if (end != null) {
                sql.append(" AND x.").append(domain.dateColumn).append(" <= ").append(alias).append(".index_date + CAST(? AS integer)");
                p.add(end);
            }
        }

        void exists(StringBuilder sql, List<Object> p, String cdm, String alias) {
            sql.append("SELECT 1");
            from(sql, p, cdm, alias);
        }
    }

    static Criterion criterion(JsonNode node, String path, boolean windowAllowed) throws StepDefinitionException {
        Json.object(node, path, CRITERION_FIELDS);
        Criterion c = new Criterion();
        c.domain = Domain.of(path + ".domain", Json.text(node, "domain", path, true));
        JsonNode set = Json.object(node.get("conceptSet"), path + ".conceptSet", Set.of("concepts", "includeDescendants"));
        JsonNode ids = Json.array(set.get("concepts"), path + ".conceptSet.concepts", 1, MAX_CONCEPTS);
        c.concepts = new Integer[ids.size()];
        for (int i = 0; i < ids.size(); i++) {
            JsonNode id = ids.get(i);
            if (!id.isIntegralNumber() || !id.canConvertToInt() || id.asInt() <= 0) {
                throw new StepDefinitionException(path + ".conceptSet.concepts[" + i + "]", "must be a positive concept id");
            }
            c.concepts[i] = id.asInt();
        }
        c.descendants = Json.bool(set, "includeDescendants", path + ".conceptSet", true);
        JsonNode value = node.get("value");
        if (value != null) {
            if (c.domain.valueColumn == null) {
                throw new StepDefinitionException(path + ".value", "a value range needs the measurement or observation domain");
            }
            Json.object(value, path + ".value", Set.of("min", "max"));
            c.min = Json.number(value, "min", path + ".value");
            c.max = Json.number(value, "max", path + ".value");
            if (c.min != null && c.max != null && c.min > c.max) {
                throw new StepDefinitionException(path + ".value", "min is above max");
            }
        }
        JsonNode window = node.get("window");
        if (window != null) {
            if (!windowAllowed) {
                throw new StepDefinitionException(path + ".window", "the entry event defines the index date and has no window");
            }
            Json.object(window, path + ".window", Set.of("startDays", "endDays"));
            c.start = Json.integer(window, "startDays", path + ".window", false, -36_500, 36_500);
            c.end = Json.integer(window, "endDays", path + ".window", false, -36_500, 36_500);
            if (c.start != null && c.end != null && c.start > c.end) {
                throw new StepDefinitionException(path + ".window", "startDays is after endDays");
            }
        }
        return c;
    }
}
