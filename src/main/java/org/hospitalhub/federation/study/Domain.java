package org.hospitalhub.federation.study;

import java.util.Arrays;
import java.util.stream.Collectors;

import org.hospitalhub.federation.StepDefinitionException;

/**
 * The clinical tables a definition may name, with their columns: the allow-list from which every table and column
 * identifier in the generated SQL comes. A definition names a domain; it never supplies an identifier.
 */
public enum Domain {
    CONDITION("condition", "condition_occurrence", "condition_occurrence_id", "condition_concept_id", "condition_start_date", null),
    DRUG("drug", "drug_exposure", "drug_exposure_id", "drug_concept_id", "drug_exposure_start_date", null),
    PROCEDURE("procedure", "procedure_occurrence", "procedure_occurrence_id", "procedure_concept_id", "procedure_date", null),
    MEASUREMENT("measurement", "measurement", "measurement_id", "measurement_concept_id", "measurement_date", "value_as_number"),
    OBSERVATION("observation", "observation", "observation_id", "observation_concept_id", "observation_date", "value_as_number"),
    VISIT("visit", "visit_occurrence", "visit_occurrence_id", "visit_concept_id", "visit_start_date", null);

    final String name;
    final String table;
    final String idColumn;
    final String conceptColumn;
    final String dateColumn;
    /** null when the domain has no numeric value. */
    final String valueColumn;

    Domain(String name, String table, String idColumn, String conceptColumn, String dateColumn, String valueColumn) {
        this.name = name;
        this.table = table;
        this.idColumn = idColumn;
        this.conceptColumn = conceptColumn;
        this.dateColumn = dateColumn;
        this.valueColumn = valueColumn;
    }

    static Domain of(String field, String value) throws StepDefinitionException {
        for (Domain d : values()) {
            if (d.name.equals(value)) {
                return d;
            }
        }
        throw new StepDefinitionException(field, "unknown domain '" + value + "' (allowed: "
                + Arrays.stream(values()).map(d -> d.name).collect(Collectors.joining(", ")) + ")");
    }
}
