package org.hospitalhub.sync;

import java.net.URI;
import java.net.URISyntaxException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.TreeMap;
import java.util.regex.Pattern;

import jakarta.enterprise.context.ApplicationScoped;
import jakarta.inject.Inject;

import org.eclipse.microprofile.config.Config;
import org.jboss.logging.Logger;

import io.quarkus.runtime.Startup;
import io.quarkus.runtime.configuration.DurationConverter;

/**
 * The gray switch of every flow, read once at startup from the {@code hub.gray.*} keys (application.properties, or the
 * hospital's {@code config/application.properties} ConfigMap; a change rolls the pods). Any unknown key or bad value
 * fails startup with a message naming the key: a typo must not silently leave a flow in the wrong mode.
 *
 * <pre>
 * hub.gray.connect-timeout / hub.gray.response-timeout         defaults for all flows (5s / 30s)
 * hub.gray.&lt;flowId&gt;.mode                                      legacy | shadow | async (required)
 * hub.gray.&lt;flowId&gt;.legacy-url                                the old synchronous endpoint (unless all async)
 * hub.gray.&lt;flowId&gt;.canary-percent                            0-100 of callers moved to async (default 0)
 * hub.gray.&lt;flowId&gt;.connect-timeout / .response-timeout       per flow
 * hub.gray.&lt;flowId&gt;.hospital.&lt;code&gt;.mode / .canary-percent    per hospital, wins over the flow
 * </pre>
 */
@Startup
@ApplicationScoped
public class GraySwitchConfig {

    private static final Logger LOG = Logger.getLogger(GraySwitchConfig.class);

    public static final String PREFIX = "hub.gray.";
    static final Duration DEFAULT_CONNECT_TIMEOUT = Duration.ofSeconds(5);
    static final Duration DEFAULT_RESPONSE_TIMEOUT = Duration.ofSeconds(30);
    private static final Set<String> GLOBAL = Set.of("connect-timeout", "response-timeout");
    private static final Set<String> FLOW = Set.of("mode", "legacy-url", "canary-percent", "connect-timeout",
            "response-timeout");
    private static final Set<String> HOSPITAL = Set.of("mode", "canary-percent");
    private static final String FLOW_KEYS = "mode, legacy-url, canary-percent, connect-timeout, response-timeout, "
            + "hospital.<code>.mode, hospital.<code>.canary-percent";
    private static final Pattern FLOW_ID = Pattern.compile("[A-Za-z0-9][A-Za-z0-9_\\-]{0,99}");
    private static final Pattern HOSPITAL_CODE = Pattern.compile("[A-Za-z0-9][A-Za-z0-9._\\-]{0,99}");

    private final Map<String, GrayFlow> flows;

    @Inject
    public GraySwitchConfig(Config config) {
        this.flows = parse(read(config));
        for (GrayFlow f : flows.values()) {
            LOG.infof("Gray switch of flow %s: mode %s, canary %d%%, %d hospital override(s), legacy %s", f.id(),
                    f.mode().label(), f.canaryPercent(), f.hospitals().size(), f.legacyUrlForDisplay());
        }
    }

    public Optional<GrayFlow> flow(String id) {
        return Optional.ofNullable(flows.get(id));
    }

    public Collection<GrayFlow> flows() {
        return flows.values();
    }

    /** The active {@code hub.gray.*} keys with their (expanded) values, profile prefixes resolved. */
    static Map<String, String> read(Config config) {
        Map<String, String> out = new TreeMap<>();
        for (String name : config.getPropertyNames()) {
            String n = name.startsWith("%") && name.indexOf('.') > 0 ? name.substring(name.indexOf('.') + 1) : name;
            if (n.startsWith(PREFIX) && !out.containsKey(n)) {
                config.getOptionalValue(n, String.class).ifPresent(v -> out.put(n, v));
            }
        }
        return out;
    }

    /**
     * Parses the {@code hub.gray.*} keys into one {@link GrayFlow} per flow id.
     *
     * @throws IllegalArgumentException listing every bad key with what is wrong with it
     */
    public static Map<String, GrayFlow> parse(Map<String, String> properties) {
        List<String> errors = new ArrayList<>();
        Map<String, String> global = new TreeMap<>();
        Map<String, Map<String, String>> flowKeys = new TreeMap<>();
        Map<String, Map<String, Map<String, String>>> hospitalKeys = new TreeMap<>();
        for (var entry : new TreeMap<>(properties).entrySet()) {
            String key = entry.getKey();
            if (!key.startsWith(PREFIX)) {
                continue;
            }
            String value = entry.getValue() == null ? "" : entry.getValue().strip();
            String rest = key.substring(PREFIX.length());
            int dot = rest.indexOf('.');
            if (dot < 0) {
                if (GLOBAL.contains(rest)) {
                    global.put(rest, value);
                } else {
                    errors.add(key + ": unknown key (allowed: hub.gray.connect-timeout, hub.gray.response-timeout, "
                            + "hub.gray.<flowId>.<setting>)");
                }
                continue;
            }
            String flow = rest.substring(0, dot);
            String setting = rest.substring(dot + 1);
            if (!FLOW_ID.matcher(flow).matches()) {
                errors.add(key + ": '" + flow + "' is not a flow id (letters, digits, _ and -)");
                continue;
            }
            if (setting.startsWith("hospital.")) {
                String h = setting.substring("hospital.".length());
                int last = h.lastIndexOf('.');
                String code = last > 0 ? h.substring(0, last) : "";
                String attr = last > 0 ? h.substring(last + 1) : h;
                if (code.isEmpty() || !HOSPITAL.contains(attr)) {
                    errors.add(key + ": unknown setting (allowed: hub.gray." + flow + ".hospital.<code>.mode, "
                            + "hub.gray." + flow + ".hospital.<code>.canary-percent)");
                } else if (!HOSPITAL_CODE.matcher(code).matches()) {
                    errors.add(key + ": '" + code + "' is not a hospital code (letters, digits, . _ and -)");
                } else {
                    hospitalKeys.computeIfAbsent(flow, k -> new TreeMap<>()).computeIfAbsent(code, k -> new TreeMap<>())
                            .put(attr, value);
                    flowKeys.computeIfAbsent(flow, k -> new TreeMap<>());
                }
            } else if (FLOW.contains(setting)) {
                flowKeys.computeIfAbsent(flow, k -> new TreeMap<>()).put(setting, value);
            } else {
                errors.add(key + ": unknown setting '" + setting + "' (allowed: " + FLOW_KEYS + ")");
            }
        }
        Duration connectDefault = duration(PREFIX + "connect-timeout", global.get("connect-timeout"),
                DEFAULT_CONNECT_TIMEOUT, errors);
        Duration responseDefault = duration(PREFIX + "response-timeout", global.get("response-timeout"),
                DEFAULT_RESPONSE_TIMEOUT, errors);

        Map<String, GrayFlow> flows = new LinkedHashMap<>();
        for (var f : flowKeys.entrySet()) {
            String id = f.getKey();
            Map<String, String> s = f.getValue();
            String p = PREFIX + id + ".";
            GrayMode mode = null;
            if (!s.containsKey("mode")) {
                errors.add(p + "mode is required (legacy, shadow or async)");
            } else {
                mode = mode(p + "mode", s.get("mode"), errors);
            }
            Integer percent = s.containsKey("canary-percent")
                    ? percent(p + "canary-percent", s.get("canary-percent"), errors)
                    : Integer.valueOf(0);
            Map<String, GrayFlow.HospitalOverride> hospitals = new LinkedHashMap<>();
            boolean needsLegacy = mode != null && mode != GrayMode.ASYNC;
            for (var h : hospitalKeys.getOrDefault(id, Map.of()).entrySet()) {
                String hp = p + "hospital." + h.getKey() + ".";
                GrayMode hm = h.getValue().containsKey("mode") ? mode(hp + "mode", h.getValue().get("mode"), errors) : null;
                Integer hpct = h.getValue().containsKey("canary-percent")
                        ? percent(hp + "canary-percent", h.getValue().get("canary-percent"), errors) : null;
                hospitals.put(h.getKey(), new GrayFlow.HospitalOverride(hm, hpct));
                needsLegacy |= hm != null && hm != GrayMode.ASYNC;
            }
            URI legacy = null;
            String url = s.get("legacy-url");
            if (url != null && !url.isEmpty()) {
                legacy = url(p + "legacy-url", url, errors);
            } else if (needsLegacy) {
                errors.add(p + "legacy-url is required: the flow (or one of its hospitals) is in legacy or shadow mode");
            }
            Duration connect = duration(p + "connect-timeout", s.get("connect-timeout"), connectDefault, errors);
            Duration response = duration(p + "response-timeout", s.get("response-timeout"), responseDefault, errors);
            if (mode != null && percent != null) {
                flows.put(id, new GrayFlow(id, mode, percent, legacy, connect, response,
                        Collections.unmodifiableMap(hospitals)));
            }
        }
        if (!errors.isEmpty()) {
            throw new IllegalArgumentException("Invalid gray switch configuration: " + String.join("; ", errors));
        }
        return Collections.unmodifiableMap(flows);
    }

    private static GrayMode mode(String key, String value, List<String> errors) {
        try {
            return GrayMode.parse(key, value);
        } catch (IllegalArgumentException e) {
            errors.add(e.getMessage());
            return null;
        }
    }

    private static Integer percent(String key, String value, List<String> errors) {
        try {
            int p = Integer.parseInt(value);
            if (p >= 0 && p <= 100) {
                return p;
            }
        } catch (NumberFormatException e) {
            // reported below
        }
        errors.add(key + " must be a whole number from 0 to 100, got '" + value + "'");
        return null;
    }

    private static Duration duration(String key, String value, Duration fallback, List<String> errors) {
        if (value == null || value.isEmpty()) {
            return fallback;
        }
        try {
            Duration d = DurationConverter.parseDuration(value);
            if (d != null && !d.isNegative() && !d.isZero()) {
                return d;
            }
        } catch (RuntimeException e) {
            // reported below
        }
        errors.add(key + " must be a positive duration such as 500ms, 5s or PT1M, got '" + value + "'");
        return fallback;
    }

    private static URI url(String key, String value, List<String> errors) {
        try {
            URI u = new URI(value);
            String scheme = u.getScheme() == null ? "" : u.getScheme().toLowerCase();
            if ((scheme.equals("http") || scheme.equals("https")) && u.getHost() != null) {
                return u;
            }
        } catch (URISyntaxException e) {
            // reported below
        }
        // user info and query may hold credentials: not echoed
        String shown = value.replaceAll("//[^/@]*@", "//***@").replaceAll("\\?.*", "?...");
        errors.add(key + " must be an absolute http(s) URL with a host, got '" + shown + "'");
        return null;
    }
}
