package org.hospitalhub.qc;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.format.DateTimeParseException;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashSet;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.concurrent.ConcurrentHashMap;
import java.util.function.Function;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import jakarta.enterprise.context.ApplicationScoped;

import org.eclipse.microprofile.config.inject.ConfigProperty;
import org.hospitalhub.delivery.SchemaRegistry;
import org.jboss.logging.Logger;

import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.fasterxml.jackson.dataformat.yaml.YAMLMapper;

import io.quarkus.runtime.Startup;

/**
 * The time-limit rules in force per hospital: the regulation's defaults from the jar ({@code qc/default-rules.yaml}),
 * overridden by the YAML files of {@code hub.qc.rules-dir} (a file without {@code hospital} applies to all hospitals,
 * one with {@code hospital: <code>} to that hospital only; a rule replaces the rule with the same id, and
 * {@code {id: x, enabled: false}} switches one off). Every file is validated at startup; the hub does not start with
 * a bad rule, and each error names the file, the rule and the field.
 */
@ApplicationScoped
@Startup
public class RuleBook {

    private static final Logger LOG = Logger.getLogger(RuleBook.class);
    static final String DEFAULTS = "qc/default-rules.yaml";
    static final Pattern ID = Pattern.compile("[a-z0-9][a-z0-9-]{0,63}");
    static final Pattern DOCUMENT = Pattern.compile("[a-z][a-z0-9-]{0,63}");
    static final Pattern CODE = Pattern.compile("[A-Za-z0-9][A-Za-z0-9._\\-]{0,99}");
    private static final Pattern SHORT_DURATION = Pattern.compile("(\\d{1,6})\\s*(s|m|h|d)");
    private static final Set<String> FILE_FIELDS = Set.of("hospital", "rules");
    private static final Set<String> RULE_FIELDS = Set.of("id", "description", "trigger", "document", "deadline",
            "recurring", "reminders", "recipients", "instanceKey", "points", "enabled");
    private static final Set<String> TRIGGER_FIELDS = Set.of("event", "when");
    private static final Set<String> RECURRING_FIELDS = Set.of("period", "periodByLevel", "until");

    /** One validation error: file, rule (id or position), field, what is wrong. */
    public record RuleError(String file, String rule, String field, String message) {
        @Override
        public String toString() {
            return file + (rule == null ? "" : ": rule " + rule) + (field == null ? "" : ": field '" + field + "'") + ": "
                    + message;
        }
    }

    /** The rule files did not validate; the message lists every error. */
    public static class InvalidRulesException extends IllegalStateException {
        private final transient List<RuleError> errors;

        public InvalidRulesException(List<RuleError> errors) {
            super("invalid qc rules (" + errors.size() + " error" + (errors.size() == 1 ? "" : "s") + "):\n  "
                    + String.join("\n  ", errors.stream().map(RuleError::toString).toList()));
            this.errors = List.copyOf(errors);
        }

        public List<RuleError> errors() {
            return errors;
        }
    }

    /** A rule file's text and where it came from. */
    public record Source(String name, String text) {
    }

    private record Entry(Rule rule, boolean enabled) {
    }

    private final Map<String, Entry> defaults;
    private final Map<String, Entry> global;
    private final Map<String, Map<String, Entry>> perHospital;
    private final Map<String, List<Rule>> effective = new ConcurrentHashMap<>();
    private final String fingerprint;

    @jakarta.inject.Inject
    public RuleBook(SchemaRegistry schemas, @ConfigProperty(name = "hub.qc.rules-dir") Optional<String> rulesDir)
            throws IOException {
        this(sources(rulesDir.filter(s -> !s.isBlank()).map(Path::of)), fieldsOf(schemas));
    }

    RuleBook(List<Source> sources, Function<String, Set<String>> fieldsOf) {
        List<RuleError> errors = new ArrayList<>();
        Map<String, Entry> d = new LinkedHashMap<>();
        Map<String, Entry> g = new LinkedHashMap<>();
        Map<String, Map<String, Entry>> h = new TreeMap<>();
        boolean first = true;
        for (Source s : sources) {
            Parsed p = parse(s, fieldsOf, errors, first);
            if (p != null) {
                Map<String, Entry> target = first ? d : p.hospital == null ? g : h.computeIfAbsent(p.hospital, k -> new LinkedHashMap<>());
                for (Entry e : p.entries) {
                    if (!first && !e.enabled() && !d.containsKey(e.rule().id()) && !g.containsKey(e.rule().id())) {
                        errors.add(new RuleError(s.name(), "'" + e.rule().id() + "'", "enabled",
                                "switches off a rule that does not exist (default rules: " + d.keySet() + ")"));
                    }
                    target.put(e.rule().id(), e);
                }
            }
            first = false;
        }
        if (!errors.isEmpty()) {
            throw new InvalidRulesException(errors);
        }
        this.defaults = d;
        this.global = g;
        this.perHospital = h;
        this.fingerprint = fingerprint(sources);
        LOG.infof("qc rules: %d defaults, %d global overrides, hospital overrides for %s", d.size(), g.size(), h.keySet());
    }

    /** A digest of the rule files in force (names and contents): it changes when a rule file does. */
    public String fingerprint() {
        return fingerprint;
    }

    private static String fingerprint(List<Source> sources) {
        try {
            java.security.MessageDigest md = java.security.MessageDigest.getInstance("SHA-256");
            for (Source s : sources) {
                md.update((s.name() + "\n" + s.text() + "\n\u0000").getBytes(java.nio.charset.StandardCharsets.UTF_8));
            }
            return java.util.HexFormat.of().formatHex(md.digest(), 0, 8);
        } catch (java.security.NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }

    /** The rules in force for a hospital, in file order (defaults first). */
    public List<Rule> rulesFor(String hospital) {
        return effective.computeIfAbsent(hospital, k -> {
            Map<String, Entry> merged = new LinkedHashMap<>(defaults);
            merged.putAll(global);
            merged.putAll(perHospital.getOrDefault(k, Map.of()));
            return merged.values().stream().filter(Entry::enabled).map(Entry::rule).toList();
        });
    }

    /** Document types some rule of the hospital asks for. */
    public Set<String> documentTypes(String hospital) {
        Set<String> s = new HashSet<>();
        rulesFor(hospital).forEach(r -> s.add(r.document()));
        return s;
    }

    // ---- Loading -----------------------------------------------------------------------------------------------------

    static List<Source> sources(Optional<Path> dir) throws IOException {
        List<Source> out = new ArrayList<>();
        try (InputStream in = Thread.currentThread().getContextClassLoader().getResourceAsStream(DEFAULTS)) {
            if (in == null) {
                throw new IllegalStateException(DEFAULTS + " is missing from the classpath");
            }
            out.add(new Source("classpath:" + DEFAULTS, new String(in.readAllBytes(), StandardCharsets.UTF_8)));
        }
        if (dir.isPresent()) {
            if (!Files.isDirectory(dir.get())) {
                throw new IllegalStateException("hub.qc.rules-dir " + dir.get() + " is not a folder");
            }
            List<Path> files = new ArrayList<>();
            try (DirectoryStream<Path> ds = Files.newDirectoryStream(dir.get(), "*.{yaml,yml}")) {
                ds.forEach(files::add);
            }
            Collections.sort(files);
            for (Path f : files) {
                out.add(new Source(f.toString(), Files.readString(f, StandardCharsets.UTF_8)));
            }
        }
        return out;
    }

    /** Payload fields an event type declares in its JSON Schema (what rules may refer to). */
    static Function<String, Set<String>> fieldsOf(SchemaRegistry schemas) {
        return type -> schemas.rawSchema(type).map(s -> {
            Set<String> f = new TreeSet<>();
            JsonNode props = s.get("properties");
            if (props != null) {
                props.fieldNames().forEachRemaining(f::add);
            }
            return (Set<String>) f;
        }).orElse(Set.of());
    }

    private record Parsed(String hospital, List<Entry> entries) {
    }

    private static Parsed parse(Source s, Function<String, Set<String>> fieldsOf, List<RuleError> errors, boolean defaults) {
        JsonNode root;
        try {
            root = YAMLMapper.builder().enable(JsonParser.Feature.STRICT_DUPLICATE_DETECTION).build().readTree(s.text());
        } catch (JsonProcessingException e) {
            errors.add(new RuleError(s.name(), null, null, "not valid YAML at line "
                    + (e.getLocation() == null ? "?" : e.getLocation().getLineNr()) + ": " + e.getOriginalMessage()));
            return null;
        }
        if (root == null || !root.isObject()) {
            errors.add(new RuleError(s.name(), null, null, "must be a mapping with a 'rules' list"));
            return null;
        }
        int before = errors.size();
        unknown(root, FILE_FIELDS, s.name(), null, "", errors);
        String hospital = null;
        JsonNode h = root.get("hospital");
        if (h != null) {
            if (defaults) {
                errors.add(new RuleError(s.name(), null, "hospital", "the default rules apply to every hospital"));
            } else if (!h.isTextual() || !CODE.matcher(h.asText()).matches()) {
                errors.add(new RuleError(s.name(), null, "hospital", "must be a hospital code (letters, digits, . _ -)"));
            } else {
                hospital = h.asText();
            }
        }
        JsonNode rules = root.get("rules");
        if (rules == null || !rules.isArray()) {
            errors.add(new RuleError(s.name(), null, "rules", "required: a list of rules"));
            return null;
        }
        List<Entry> entries = new ArrayList<>();
        Set<String> ids = new HashSet<>();
        for (int i = 0; i < rules.size(); i++) {
            JsonNode r = rules.get(i);
            String where = "rules[" + i + "]";
            if (!r.isObject()) {
                errors.add(new RuleError(s.name(), where, null, "must be a mapping"));
                continue;
            }
            JsonNode idNode = r.get("id");
            String id = idNode != null && idNode.isTextual() ? idNode.asText() : null;
            String name = id == null ? where : "'" + id + "' (" + where + ")";
            if (id == null || !ID.matcher(id).matches()) {
                errors.add(new RuleError(s.name(), name, "id", "required: lower-case letters, digits and -, e.g. admission-record"));
                continue;
            }
            if (!ids.add(id)) {
                errors.add(new RuleError(s.name(), name, "id", "duplicate rule id in this file"));
                continue;
            }
            Entry e = rule(s.name(), name, id, (ObjectNode) r, fieldsOf, errors);
            if (e != null) {
                entries.add(e);
            }
        }
        return errors.size() > before ? null : new Parsed(hospital, entries);
    }

    private static Entry rule(String file, String name, String id, ObjectNode r, Function<String, Set<String>> fieldsOf,
            List<RuleError> errors) {
        int before = errors.size();
        unknown(r, RULE_FIELDS, file, name, "", errors);
        JsonNode en = r.get("enabled");
        boolean enabled = true;
        if (en != null) {
            if (!en.isBoolean()) {
                errors.add(new RuleError(file, name, "enabled", "must be true or false"));
            } else {
                enabled = en.asBoolean();
            }
        }
        if (!enabled && r.size() == 2) {
            return errors.size() > before ? null
                    : new Entry(new Rule(id, null, null, Map.of(), null, null, null, List.of(), List.of(), null, 0, file), false);
        }
        String description = optionalText(r, "description", file, name, errors);
        // trigger
        String event = null;
        Map<String, Set<String>> when = new LinkedHashMap<>();
        JsonNode t = r.get("trigger");
        if (t == null || !t.isObject()) {
            errors.add(new RuleError(file, name, "trigger", "required: {event: <event type>, when: {<payload field>: <value or list>}}"));
        } else {
            unknown(t, TRIGGER_FIELDS, file, name, "trigger.", errors);
            JsonNode ev = t.get("event");
            if (ev == null || !ev.isTextual()) {
                errors.add(new RuleError(file, name, "trigger.event", "required: one of " + new TreeSet<>(ClinicalEvent.TRIGGERS)));
            } else if (!ClinicalEvent.TRIGGERS.contains(ev.asText())) {
                errors.add(new RuleError(file, name, "trigger.event", "'" + ev.asText() + "' cannot open a task; use one of "
                        + new TreeSet<>(ClinicalEvent.TRIGGERS)
                        + (ev.asText().equals(ClinicalEvent.DOCUMENT_COMPLETED) ? " (a completed document closes tasks)" : "")));
            } else {
                event = ev.asText();
            }
            JsonNode w = t.get("when");
            if (w != null) {
                if (!w.isObject()) {
                    errors.add(new RuleError(file, name, "trigger.when", "must be a mapping of payload field to a value or a list of values"));
                } else {
                    for (Iterator<Map.Entry<String, JsonNode>> it = w.fields(); it.hasNext();) {
                        Map.Entry<String, JsonNode> c = it.next();
                        String f = "trigger.when." + c.getKey();
                        if (event != null && !fieldsOf.apply(event).contains(c.getKey())) {
                            errors.add(new RuleError(file, name, f, "'" + c.getKey() + "' is not a payload field of " + event
                                    + " (fields: " + fieldsOf.apply(event) + ")"));
                            continue;
                        }
                        Set<String> values = new LinkedHashSet<>();
                        if (c.getValue().isArray() && !c.getValue().isEmpty()) {
                            c.getValue().forEach(v -> values.add(v.asText()));
                        } else if (c.getValue().isValueNode() && !c.getValue().isNull()) {
                            values.add(c.getValue().asText());
                        } else {
                            errors.add(new RuleError(file, name, f, "must be a value or a non-empty list of values"));
                        }
                        when.put(c.getKey(), values);
                    }
                }
            }
        }
        String document = null;
        JsonNode doc = r.get("document");
        if (doc == null || !doc.isTextual() || !DOCUMENT.matcher(doc.asText()).matches()) {
            errors.add(new RuleError(file, name, "document", "required: the document type to write, lower-case letters, "
                    + "digits and -, e.g. admission-record (the documentType of qc.document.completed)"));
        } else {
            document = doc.asText();
        }
        // deadline or recurring
        Duration deadline = null;
        Rule.Recurring recurring = null;
        JsonNode rec = r.get("recurring");
        JsonNode dl = r.get("deadline");
        if (rec != null) {
            if (dl != null) {
                errors.add(new RuleError(file, name, "deadline", "a recurring rule has periods, not a deadline"));
            }
            recurring = recurring(file, name, rec, errors);
        } else if (dl == null) {
            errors.add(new RuleError(file, name, "deadline", "required: how long after the event the document is due, e.g. 24h, 30m, 7d"));
        } else {
            deadline = duration(dl, file, name, "deadline", errors);
        }
        Duration shortest = deadline != null ? deadline : recurring == null ? null : shortest(recurring);
        List<Duration> reminders = new ArrayList<>();
        JsonNode rem = r.get("reminders");
        if (rem != null) {
            if (!rem.isArray()) {
                errors.add(new RuleError(file, name, "reminders", "must be a list of durations before the due time, e.g. [2h, 30m]"));
            } else {
                for (int i = 0; i < rem.size(); i++) {
                    Duration d = duration(rem.get(i), file, name, "reminders[" + i + "]", errors);
                    if (d != null && shortest != null && d.compareTo(shortest) >= 0) {
                        errors.add(new RuleError(file, name, "reminders[" + i + "]", "a reminder " + text(d)
                                + " before the due time would come before the task opens (deadline " + text(shortest) + ")"));
                    } else if (d != null) {
                        reminders.add(d);
                    }
                }
            }
        }
        String instanceKey = optionalText(r, "instanceKey", file, name, errors);
        if (instanceKey != null && event != null && !fieldsOf.apply(event).contains(instanceKey)) {
            errors.add(new RuleError(file, name, "instanceKey", "'" + instanceKey + "' is not a payload field of " + event
                    + " (fields: " + fieldsOf.apply(event) + ")"));
        }
        List<String> recipients = new ArrayList<>();
        JsonNode rc = r.get("recipients");
        if (rc == null) {
            recipients.add("attending");
        } else if (!rc.isArray() || rc.isEmpty()) {
            errors.add(new RuleError(file, name, "recipients", "must be a non-empty list, e.g. [attending]"));
        } else {
            for (int i = 0; i < rc.size(); i++) {
                String f = "recipients[" + i + "]";
                String v = rc.get(i).asText("");
                String problem = recipientProblem(v, event, fieldsOf);
                if (problem != null) {
                    errors.add(new RuleError(file, name, f, problem));
                } else {
                    recipients.add(v);
                }
            }
        }
        double points = 1;
        JsonNode pt = r.get("points");
        if (pt != null) {
            if (!pt.isNumber() || pt.asDouble() < 0 || pt.asDouble() > 1000) {
                errors.add(new RuleError(file, name, "points", "must be a number from 0 to 1000 (points deducted per overdue or late task)"));
            } else {
                points = pt.asDouble();
            }
        }
        if (errors.size() > before) {
            return null;
        }
        return new Entry(new Rule(id, description, event, Map.copyOf(when), document, deadline, recurring, List.copyOf(reminders),
                List.copyOf(recipients), instanceKey, points, file), enabled);
    }

    private static Rule.Recurring recurring(String file, String name, JsonNode rec, List<RuleError> errors) {
        if (!rec.isObject()) {
            errors.add(new RuleError(file, name, "recurring", "must be a mapping: {period | periodByLevel, until}"));
            return null;
        }
        int before = errors.size();
        unknown(rec, RECURRING_FIELDS, file, name, "recurring.", errors);
        Duration period = null;
        Map<String, Duration> byLevel = new TreeMap<>();
        JsonNode p = rec.get("period");
        JsonNode pl = rec.get("periodByLevel");
        if ((p == null) == (pl == null)) {
            errors.add(new RuleError(file, name, "recurring.period", "give exactly one of period (e.g. 1d) and periodByLevel "
                    + "(critical, serious, stable)"));
        } else if (p != null) {
            period = duration(p, file, name, "recurring.period", errors);
        } else if (!pl.isObject()) {
            errors.add(new RuleError(file, name, "recurring.periodByLevel", "must be a mapping {critical: 1d, serious: 2d, stable: 3d}"));
        } else {
            for (Iterator<Map.Entry<String, JsonNode>> it = pl.fields(); it.hasNext();) {
                Map.Entry<String, JsonNode> e = it.next();
                if (!ClinicalEvent.LEVELS.contains(e.getKey())) {
                    errors.add(new RuleError(file, name, "recurring.periodByLevel." + e.getKey(), "unknown condition level; use "
                            + new TreeSet<>(ClinicalEvent.LEVELS)));
                    continue;
                }
                Duration d = duration(e.getValue(), file, name, "recurring.periodByLevel." + e.getKey(), errors);
                if (d != null) {
                    byLevel.put(e.getKey(), d);
                }
            }
            for (String level : new TreeSet<>(ClinicalEvent.LEVELS)) {
                if (!byLevel.containsKey(level) && !pl.has(level)) {
                    errors.add(new RuleError(file, name, "recurring.periodByLevel." + level, "required: a period for every level"));
                }
            }
        }
        Set<String> until = new LinkedHashSet<>();
        JsonNode u = rec.get("until");
        if (u == null || !u.isArray() || u.isEmpty()) {
            errors.add(new RuleError(file, name, "recurring.until", "required: the events that end the series, e.g. [qc.discharge, qc.death]"));
        } else {
            for (int i = 0; i < u.size(); i++) {
                String v = u.get(i).asText("");
                if (!ClinicalEvent.TRIGGERS.contains(v)) {
                    errors.add(new RuleError(file, name, "recurring.until[" + i + "]", "'" + v + "' is not a clinical event type; use one of "
                            + new TreeSet<>(ClinicalEvent.TRIGGERS)));
                } else {
                    until.add(v);
                }
            }
        }
        return errors.size() > before ? null : new Rule.Recurring(period, Map.copyOf(byLevel), Set.copyOf(until));
    }

    private static Duration shortest(Rule.Recurring r) {
        if (r.period() != null) {
            return r.period();
        }
        return r.periodByLevel().values().stream().min(Duration::compareTo).orElse(null);
    }

    private static String recipientProblem(String v, String event, Function<String, Set<String>> fieldsOf) {
        if (v.equals("attending") || v.equals("department")) {
            return null;
        }
        int colon = v.indexOf(':');
        String kind = colon < 0 ? v : v.substring(0, colon);
        String arg = colon < 0 ? "" : v.substring(colon + 1);
        if (kind.equals("role") && ID.matcher(arg).matches()) {
            return null;
        }
        if ((kind.equals("doctor") || kind.equals("department")) && !arg.isEmpty()) {
            if (event != null && !fieldsOf.apply(event).contains(arg)) {
                return "'" + arg + "' is not a payload field of " + event + " (fields: " + fieldsOf.apply(event) + ")";
            }
            return null;
        }
        return "'" + v + "' is not a recipient; use attending, department, doctor:<payload field>, "
                + "department:<payload field> or role:<role name>";
    }

    private static void unknown(JsonNode node, Set<String> allowed, String file, String rule, String prefix, List<RuleError> errors) {
        node.fieldNames().forEachRemaining(f -> {
            if (!allowed.contains(f)) {
                errors.add(new RuleError(file, rule, prefix + f, "unknown field (allowed: " + new TreeSet<>(allowed) + ")"));
            }
        });
    }

    private static String optionalText(JsonNode r, String field, String file, String rule, List<RuleError> errors) {
        JsonNode v = r.get(field);
        if (v == null || v.isNull()) {
            return null;
        }
        if (!v.isTextual() || v.asText().isBlank()) {
            errors.add(new RuleError(file, rule, field, "must be a non-empty text"));
            return null;
        }
        return v.asText();
    }

    /** 24h, 30m, 10s, 7d, or ISO-8601 (PT24H); positive. */
    static Duration duration(JsonNode v, String file, String rule, String field, List<RuleError> errors) {
        String s = v == null || !v.isValueNode() ? "" : v.asText().strip();
        Duration d = parseDuration(s);
        if (d == null || d.isNegative() || d.isZero()) {
            errors.add(new RuleError(file, rule, field, "must be a positive duration such as 24h, 30m, 10s, 7d or PT24H; got '" + s + "'"));
            return null;
        }
        return d;
    }

    static Duration parseDuration(String s) {
        Matcher m = SHORT_DURATION.matcher(s.toLowerCase(Locale.ROOT));
        if (m.matches()) {
            long n = Long.parseLong(m.group(1));
            return switch (m.group(2)) {
                case "s" -> Duration.ofSeconds(n);
                case "m" -> Duration.ofMinutes(n);
                case "h" -> Duration.ofHours(n);
                default -> Duration.ofDays(n);
            };
        }
        try {
            return Duration.parse(s.toUpperCase(Locale.ROOT));
        } catch (DateTimeParseException e) {
            return null;
        }
    }

    /** 24h, 10m, 7d: the short form of a duration. */
    public static String text(Duration d) {
        if (d == null) {
            return null;
        }
        long s = d.getSeconds();
        if (s % 86400 == 0) {
            return s / 86400 + "d";
        }
        if (s % 3600 == 0) {
            return s / 3600 + "h";
        }
        if (s % 60 == 0) {
            return s / 60 + "m";
        }
        return s + "s";
    }
}
