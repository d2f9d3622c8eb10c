package org.hospitalhub.federation.study;

import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;

import com.fasterxml.jackson.databind.JsonNode;

import org.hospitalhub.federation.StepDefinitionException;

/**
 * An analysis definition (version 1): {@code {"version": 1, "analyses": [{"name": "n", "kind": "count"}, {"name":
 * "age", "kind": "numeric", "variable": "age"}, {"name": "sex", "kind": "proportion", "variable": "sex"}, {"name":
 * "hba1c_by_htn", "kind": "tTest", "variable": "hba1c", "groupBy": "htn"}, {"name": "htn_by_sex", "kind":
 * "chiSquare", "variable": "htn", "groupBy": "sex"}]}}. numeric: n, mean, SD, median, IQR of a numeric variable;
 * proportion: counts and shares of a variable's values; tTest: Welch's test of a numeric variable between the two
 * values of groupBy; chiSquare: independence of two categorical variables.
 */
record AnalysisPlan(List<Analysis> analyses) {

    record Analysis(String name, String kind, String variable, String groupBy) {
    }

    static final Set<String> KINDS = Set.of("count", "numeric", "proportion", "tTest", "chiSquare");

    static AnalysisPlan parse(JsonNode def, Set<String> knownVariables) throws StepDefinitionException {
        Json.object(def, "$", Set.of("version", "analyses"));
        Json.version(def, "$");
        JsonNode list = Json.array(def.get("analyses"), "$.analyses", 1, 100);
        List<Analysis> out = new ArrayList<>();
        Set<String> names = new HashSet<>();
        for (int i = 0; i < list.size(); i++) {
            String path = "$.analyses[" + i + "]";
            JsonNode a = Json.object(list.get(i), path, Set.of("name", "kind", "variable", "groupBy"));
            String name = Json.name(a, "name", path);
            if (!names.add(name)) {
                throw new StepDefinitionException(path + ".name", "duplicate analysis name '" + name + "'");
            }
            String kind = Json.text(a, "kind", path, true);
            if (!KINDS.contains(kind)) {
                throw new StepDefinitionException(path + ".kind", "unknown analysis kind '" + kind
                        + "' (allowed: count, numeric, proportion, tTest, chiSquare)");
            }
            String variable = null;
            String groupBy = null;
            if (!kind.equals("count")) {
                variable = known(a, "variable", path, knownVariables);
            } else if (a.has("variable")) {
                throw new StepDefinitionException(path + ".variable", "not allowed for kind count");
            }
            if (kind.equals("tTest") || kind.equals("chiSquare")) {
                groupBy = known(a, "groupBy", path, knownVariables);
            } else if (a.has("groupBy")) {
                throw new StepDefinitionException(path + ".groupBy", "only tTest and chiSquare take groupBy");
            }
            out.add(new Analysis(name, kind, variable, groupBy));
        }
        return new AnalysisPlan(out);
    }

    private static String known(JsonNode a, String field, String path, Set<String> knownVariables)
            throws StepDefinitionException {
        String v = Json.name(a, field, path);
        if (!knownVariables.contains(v)) {
            throw new StepDefinitionException(path + "." + field, "unknown variable '" + v + "' (the variables step defines: "
                    + String.join(", ", knownVariables.stream().sorted().toList()) + ")");
        }
        return v;
    }
}
