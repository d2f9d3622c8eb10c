package org.hospitalhub.qc;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.function.Function;
import java.util.stream.Collectors;

import org.hospitalhub.delivery.SchemaRegistry;
import org.junit.jupiter.api.Test;

import com.fasterxml.jackson.databind.ObjectMapper;

/** The rule files: the regulation's defaults, overrides per hospital, and errors naming file, rule and field. */
class RuleBookTest {

    private static Function<String, Set<String>> fields() throws Exception {
        return RuleBook.fieldsOf(new SchemaRegistry(new ObjectMapper(), Optional.empty()));
    }

    private static RuleBook book(String... files) throws Exception {
        List<RuleBook.Source> sources = new ArrayList<>(RuleBook.sources(Optional.empty()));
        for (int i = 0; i < files.length; i++) {
            sources.add(new RuleBook.Source("rules-" + i + ".yaml", files[i]));
        }
        return new RuleBook(sources, fields());
    }

    @Test
    void theDefaultsAreTheRegulations() throws Exception {
        Map<String, Rule> r = book().rulesFor("any").stream().collect(Collectors.toMap(Rule::id, x -> x));
        assertEquals(Duration.ofHours(24), r.get("admission-record").deadline());
        assertEquals(Duration.ofHours(8), r.get("first-progress-note").deadline());
        assertEquals(Duration.ofHours(48), r.get("attending-first-round").deadline());
        assertEquals(Map.of("critical", Duration.ofDays(1), "serious", Duration.ofDays(2), "stable", Duration.ofDays(3)),
                r.get("progress-note").recurring().periodByLevel());
        assertEquals(Set.of("qc.discharge", "qc.death"), r.get("progress-note").recurring().until());
        assertEquals(Duration.ofHours(6), r.get("rescue-record").deadline());
        assertEquals(Duration.ofHours(24), r.get("operation-record").deadline());
        assertEquals(Duration.ofHours(24), r.get("transfer-in-note").deadline());
        assertEquals(Duration.ofHours(24), r.get("discharge-record").deadline());
        assertEquals(Duration.ofHours(24), r.get("death-record").deadline());
        assertEquals(Duration.ofDays(7), r.get("death-case-discussion").deadline());
        assertEquals(Duration.ofHours(48), r.get("consultation-routine").deadline());
        assertEquals(Duration.ofMinutes(10), r.get("consultation-emergency").deadline());
        assertEquals(Map.of("urgency", Set.of("emergency")), r.get("consultation-emergency").when());
        assertEquals(12, r.size());
    }

    @Test
    void aHospitalOverridesReplacesAndSwitchesOffRules() throws Exception {
        RuleBook b = book("""
                rules:
                  - {id: admission-record, trigger: {event: qc.admission}, document: admission-record, deadline: 12h}
                """, """
                hospital: city
                rules:
                  - {id: discharge-record, trigger: {event: qc.discharge}, document: discharge-record, deadline: PT48H, points: 5}
                  - {id: progress-note, enabled: false}
                  - {id: icu-critical-note, trigger: {event: qc.condition.changed, when: {level: critical}},
                     document: critical-note, deadline: 6h, reminders: [1h], recipients: [attending, role:head-nurse]}
                """);
        Map<String, Rule> city = b.rulesFor("city").stream().collect(Collectors.toMap(Rule::id, x -> x));
        Map<String, Rule> other = b.rulesFor("county").stream().collect(Collectors.toMap(Rule::id, x -> x));
        assertEquals(Duration.ofHours(12), city.get("admission-record").deadline(), "global override");
        assertEquals(Duration.ofHours(12), other.get("admission-record").deadline());
        assertEquals(Duration.ofHours(48), city.get("discharge-record").deadline());
        assertEquals(5.0, city.get("discharge-record").points());
        assertEquals(Duration.ofHours(24), other.get("discharge-record").deadline());
        assertTrue(!city.containsKey("progress-note") && other.containsKey("progress-note"));
        assertEquals(List.of("attending", "role:head-nurse"), city.get("icu-critical-note").recipients());
    }

    @Test
    void badRulesAreRefusedNamingFileRuleAndField() {
        RuleBook.InvalidRulesException e = assertThrows(RuleBook.InvalidRulesException.class, () -> book("""
                hospital: city
                rules:
                  - id: admission-record
                    trigger: {event: qc.admission}
                    document: admission-record
                    deadline: 24 hours
                  - id: consult
                    trigger: {event: qc.consultation.requested, when: {urgancy: emergency}}
                    document: consultation-record
                    deadline: 10m
                    reminders: [15m]
                    recipients: [doctor:consultant, nurse]
                  - id: closes
                    trigger: {event: qc.document.completed}
                    document: x
                    deadline: 1h
                    colour: red
                  - id: notes
                    trigger: {event: qc.admission}
                    document: progress-note
                    recurring: {periodByLevel: {critical: 1d, stable: 3d}}
                  - id: consult
                    trigger: {event: qc.admission}
                    document: y
                    deadline: 1h
                  - {id: no-such-rule, enabled: false}
                """));
        List<String> errors = e.errors().stream().map(x -> x.file() + " | " + x.rule() + " | " + x.field()).toList();
        String f = "rules-0.yaml";
        for (String expected : List.of(
                f + " | 'admission-record' (rules[0]) | deadline",
                f + " | 'consult' (rules[1]) | trigger.when.urgancy",
                f + " | 'consult' (rules[1]) | reminders[0]",
                f + " | 'consult' (rules[1]) | recipients[0]",
                f + " | 'consult' (rules[1]) | recipients[1]",
                f + " | 'closes' (rules[2]) | colour",
                f + " | 'closes' (rules[2]) | trigger.event",
                f + " | 'notes' (rules[3]) | recurring.periodByLevel.serious",
                f + " | 'notes' (rules[3]) | recurring.until",
                f + " | 'consult' (rules[4]) | id")) {
            assertTrue(errors.contains(expected), "missing error " + expected + " in " + errors);
        }
        assertTrue(e.getMessage().contains("rules-0.yaml: rule 'admission-record' (rules[0]): field 'deadline': must be a positive "
                + "duration such as 24h"), e.getMessage());
        assertTrue(e.getMessage().contains("'urgancy' is not a payload field of qc.consultation.requested"), e.getMessage());

        RuleBook.InvalidRulesException yaml = assertThrows(RuleBook.InvalidRulesException.class, () -> book("rules: [ {id: x"));
        assertTrue(yaml.errors().get(0).message().startsWith("not valid YAML at line"), yaml.getMessage());
        RuleBook.InvalidRulesException off = assertThrows(RuleBook.InvalidRulesException.class,
                () -> book("rules:\n  - {id: no-such-rule, enabled: false}\n"));
        assertEquals("enabled", off.errors().get(0).field());
    }
}
