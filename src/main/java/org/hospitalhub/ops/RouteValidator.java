package org.hospitalhub.ops;

import java.io.IOException;
import java.io.InputStream;
import java.net.JarURLConnection;
import java.net.URISyntaxException;
import java.net.URL;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Collections;
import java.util.Comparator;
import java.util.Enumeration;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;
import java.util.Set;
import java.util.TreeMap;
import java.util.function.Predicate;
import java.util.jar.JarEntry;
import java.util.jar.JarFile;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;

import org.apache.camel.LineNumberAware;
import org.apache.camel.RoutesBuilder;
import org.apache.camel.builder.RouteBuilder;
import org.apache.camel.builder.RouteConfigurationBuilder;
import org.apache.camel.impl.DefaultCamelContext;
import org.apache.camel.impl.engine.DefaultComponentResolver;
import org.apache.camel.model.EndpointRequiredDefinition;
import org.apache.camel.model.Model;
import org.apache.camel.model.ProcessorDefinitionHelper;
import org.apache.camel.model.RouteConfigurationDefinition;
import org.apache.camel.model.RouteDefinition;
import org.apache.camel.model.RouteTemplateDefinition;
import org.apache.camel.model.TemplatedRouteDefinition;
import org.apache.camel.model.TemplatedRouteParameterDefinition;
import org.apache.camel.spi.FactoryFinder;
import org.apache.camel.spi.Resource;
import org.apache.camel.spi.RoutesLoader;
import org.apache.camel.support.PatternHelper;
import org.apache.camel.support.PluginHelper;
import org.apache.camel.support.ResourceHelper;
import org.apache.camel.util.StringHelper;
import org.hospitalhub.delivery.KafkaBatch;
import org.snakeyaml.engine.v2.api.LoadSettings;
import org.snakeyaml.engine.v2.api.lowlevel.Compose;
import org.snakeyaml.engine.v2.exceptions.MarkedYamlEngineException;
import org.snakeyaml.engine.v2.nodes.MappingNode;
import org.snakeyaml.engine.v2.nodes.Node;
import org.snakeyaml.engine.v2.nodes.NodeTuple;
import org.snakeyaml.engine.v2.nodes.ScalarNode;
import org.snakeyaml.engine.v2.nodes.SequenceNode;

/**
 * Checks a hospital's route files against the hub's shared routes before they are deployed, and again when the hub
 * starts. The files are loaded with Camel's own YAML DSL into a scratch {@link DefaultCamelContext} that is never
 * started (no database, broker or bean needed), the templated routes are expanded, and the resulting model is checked
 * for what Camel either reports without naming the file or does not report at all: unknown template, missing or unknown
 * template parameter, a true/false parameter given something else,
 * unknown {@code routeConfigurationId} (Camel silently runs such a route without the dead-letter channel),
 * duplicate route id, a flow with two sources or two sinks, a source without a sink or a sink without a source, an
 * endpoint scheme with no Camel component. Every problem names its file and, where known, its line.
 */
public final class RouteValidator {

    /** Where the shared route files live on the classpath. */
    public static final String CORE_FOLDER = "routes/core";
    /** The only files Camel loads from a routes folder (camel.main.routes-include-pattern). */
    public static final String SUFFIX = ".camel.yaml";
    /** Flows hand their batches from source to sink over direct:deliver-&lt;flowId&gt; (see templates.camel.yaml). */
    static final String DELIVER = "deliver-";

    private static final Pattern PLACEHOLDER = Pattern.compile("\\{\\{([^{}]+)}}");
    private static final Pattern KEBAB = Pattern.compile("[a-z][a-z0-9]*(-[a-z0-9]+)+");

    /** A route file: the name shown to the user and its text. */
    public record RouteFile(String name, String text) {
    }

    /** One problem in one file; line 0 when Camel does not tell. */
    public record Problem(String file, int line, String message) {
        @Override
        public String toString() {
            return file + (line > 0 ? ":" + line : "") + ": " + message;
        }
    }

    /**
     * The outcome: problems make the files unfit to deploy, warnings do not. {@code flows}: the flowIds with a source;
     * {@code templates}: route id to the template it was made from (Camel's model does not keep it).
     */
    public record Report(List<String> files, List<Problem> problems, List<Problem> warnings, int routes,
            List<String> flows, Map<String, String> templates) {

        public boolean valid() {
            return problems.isEmpty();
        }

        /** The problems, one a line, for an exception message or the console. */
        public String describe() {
            StringBuilder sb = new StringBuilder();
            problems.forEach(p -> sb.append("\n  ").append(p));
            return sb.toString();
        }
    }

    /** Where a route was declared. */
    private record Origin(String file, int line) {
        @Override
        public String toString() {
            return file + (line > 0 ? ":" + line : "");
        }
    }

    private final Predicate<String> extraComponents;

    /** A validator that knows only the Camel components on the classpath. */
    public RouteValidator() {
        this(name -> false);
    }

    /**
     * @param extraComponents component names known besides those on the classpath (e.g. components the running hub
     *                        has as beans)
     */
    public RouteValidator(Predicate<String> extraComponents) {
        this.extraComponents = extraComponents;
    }

    // ---- Finding the files ------------------------------------------------------------------------------------------

    /** The shared route files in the jar (or target/classes), sorted by name. */
    public static List<RouteFile> coreFiles(ClassLoader loader) throws IOException {
        Map<String, RouteFile> found = new TreeMap<>();
        Enumeration<URL> roots = loader.getResources(CORE_FOLDER);
        while (roots.hasMoreElements()) {
            URL root = roots.nextElement();
            if ("file".equals(root.getProtocol())) {
                Path dir;
                try {
                    dir = Path.of(root.toURI());
                } catch (URISyntaxException e) {
                    throw new IOException("cannot read " + root + ": " + e.getMessage(), e);
                }
                for (Path p : routeFilesIn(dir)) {
                    String name = "classpath:" + CORE_FOLDER + "/" + p.getFileName();
                    found.putIfAbsent(name, new RouteFile(name, Files.readString(p, StandardCharsets.UTF_8)));
                }
            } else if ("jar".equals(root.getProtocol())) {
                JarURLConnection connection = (JarURLConnection) root.openConnection();
                connection.setUseCaches(false);
                try (JarFile jar = connection.getJarFile()) {
                    for (JarEntry entry : Collections.list(jar.entries())) {
                        String n = entry.getName();
                        if (n.startsWith(CORE_FOLDER + "/") && n.endsWith(SUFFIX)
                                && n.indexOf('/', CORE_FOLDER.length() + 1) < 0) {
                            try (InputStream in = jar.getInputStream(entry)) {
                                String name = "classpath:" + n;
                                found.putIfAbsent(name, new RouteFile(name,
                                        new String(in.readAllBytes(), StandardCharsets.UTF_8)));
                            }
                        }
                    }
                }
            }
        }
        if (found.isEmpty()) {
            throw new IOException("no " + CORE_FOLDER + "/*" + SUFFIX + " on the classpath");
        }
        return new ArrayList<>(found.values());
    }

    /** The route files of a hospital's folder, as the hub loads them, sorted by name. */
    public static List<RouteFile> folderFiles(Path dir) throws IOException {
        List<RouteFile> files = new ArrayList<>();
        for (Path p : routeFilesIn(dir)) {
            files.add(new RouteFile(p.toString(), Files.readString(p, StandardCharsets.UTF_8)));
        }
        return files;
    }

    private static List<Path> routeFilesIn(Path dir) throws IOException {
        try (Stream<Path> s = Files.list(dir)) {
            return s.filter(p -> p.getFileName().toString().endsWith(SUFFIX) && Files.isRegularFile(p)).sorted()
                    .toList();
        }
    }

    /** Validates the shared route files together with the files of a hospital's folder. */
    public Report validateFolder(List<RouteFile> core, Path dir) throws IOException {
        List<Problem> warnings = new ArrayList<>();
        if (!Files.isDirectory(dir)) {
            Report r = validate(core, List.of());
            List<Problem> problems = new ArrayList<>(r.problems());
            problems.add(0, new Problem(dir.toString(), 0, "is not a folder"));
            return new Report(r.files(), problems, r.warnings(), r.routes(), r.flows(), r.templates());
        }
        try (Stream<Path> s = Files.list(dir)) {
            s.map(p -> p.getFileName().toString()).filter(n -> (n.endsWith(".yaml") || n.endsWith(".yml"))
                    && !n.endsWith(SUFFIX)).sorted().forEach(n -> warnings.add(new Problem(dir.resolve(n).toString(), 0,
                            "not loaded by the hub: route file names must end with " + SUFFIX)));
        }
        Report r = validate(core, folderFiles(dir));
        warnings.addAll(r.warnings());
        return new Report(r.files(), r.problems(), warnings, r.routes(), r.flows(), r.templates());
    }

    // ---- Validation -------------------------------------------------------------------------------------------------

    /** Validates route files loaded in this order (shared files first, then a hospital's). */
    public Report validate(List<RouteFile> core, List<RouteFile> hospital) {
        List<RouteFile> all = new ArrayList<>(core);
        all.addAll(hospital);
        List<Problem> problems = new ArrayList<>();
        List<Problem> warnings = new ArrayList<>();
        Map<String, Origin> routeIds = new LinkedHashMap<>();
        Map<String, String> templateOf = new LinkedHashMap<>(); // route id -> template it was made from
        Set<String> brokenFlows = new HashSet<>(); // flows with a part that failed to load

        DefaultCamelContext camel = new DefaultCamelContext(false);
        try {
            camel.build();
            RoutesLoader loader = PluginHelper.getRoutesLoader(camel);
            Model model = camel.getCamelContextExtension().getContextPlugin(Model.class);

            // 1. Parse every file: YAML syntax, unknown keys, unknown EIPs.
            Map<RouteFile, RouteBuilder> parsed = new LinkedHashMap<>();
            Map<RouteFile, Map<String, Integer>> lines = new LinkedHashMap<>();
            for (RouteFile f : all) {
                lines.put(f, scan(f, warnings));
                try {
                    Resource resource = ResourceHelper.fromString(f.name(), f.text());
                    Collection<RoutesBuilder> builders = loader.findRoutesBuilders(List.of(resource));
                    for (RoutesBuilder b : builders) {
                        if (b instanceof RouteBuilder rb) {
                            rb.setCamelContext(camel);
                            if (rb instanceof RouteConfigurationBuilder rcb) {
                                rcb.configuration();
                            }
                            rb.configureRoutes(camel);
                            parsed.put(f, rb);
                        }
                    }
                } catch (Exception e) {
                    problems.add(yamlProblem(f, e));
                }
            }

            // 2. Shared error handling first, then routes and templates, then templated routes (Camel's own order).
            for (var e : parsed.entrySet()) {
                if (e.getValue() instanceof RouteConfigurationBuilder rcb) {
                    try {
                        model.addRouteConfigurations(rcb.getRouteConfigurationCollection().getRouteConfigurations());
                    } catch (Exception ex) {
                        problems.add(new Problem(e.getKey().name(), 0, message(ex)));
                    }
                }
            }
            for (var e : parsed.entrySet()) {
                RouteFile f = e.getKey();
                RouteBuilder rb = e.getValue();
                for (RouteDefinition rd : rb.getRouteCollection().getRoutes()) {
                    String id = rd.getId();
                    int line = line(lines.get(f), id, rd);
                    if (id == null || id.isBlank()) {
                        warnings.add(new Problem(f.name(), line, "route from " + rd.getInput().getEndpointUri()
                                + " has no id: Camel names it route1, route2..., which breaks metrics and tests"));
                    } else {
                        claimRouteId(routeIds, id, new Origin(f.name(), line), problems);
                    }
                }
                try {
                    camel.addRoutes(rb);
                } catch (Exception ex) {
                    problems.add(new Problem(f.name(), 0, message(ex)));
                }
            }
            for (var e : parsed.entrySet()) {
                RouteFile f = e.getKey();
                for (TemplatedRouteDefinition t : e.getValue().getTemplatedRouteCollection().getTemplatedRoutes()) {
                    if (addTemplatedRoute(model, f, lines.get(f).getOrDefault(t.getRouteId(), 0), t, routeIds,
                            problems)) {
                        templateOf.put(t.getRouteId(), t.getRouteTemplateRef());
                    } else if (t.getParameters() != null) {
                        // its flow is incomplete for a reason already reported: no "source without sink" on top
                        t.getParameters().stream().filter(p -> "flowId".equals(p.getName()))
                                .forEach(p -> brokenFlows.add(p.getValue()));
                    }
                }
            }

            // 3. The model as the hub would run it.
            List<String> flows = checkModel(camel, model, routeIds, templateOf, brokenFlows, problems, warnings);
            List<String> names = all.stream().map(RouteFile::name).toList();
            Comparator<Problem> order = Comparator
                    .comparingInt((Problem p) -> names.indexOf(p.file()) < 0 ? Integer.MAX_VALUE : names.indexOf(p.file()))
                    .thenComparingInt(Problem::line);
            problems.sort(order);
            warnings.sort(order);
            return new Report(names, problems, warnings, model.getRouteDefinitions().size(), flows,
                    Collections.unmodifiableMap(templateOf));
        } finally {
            camel.stop();
        }
    }

    private static boolean addTemplatedRoute(Model model, RouteFile f, int line, TemplatedRouteDefinition t,
            Map<String, Origin> routeIds, List<Problem> problems) {
        String what = "templatedRoute " + (t.getRouteId() == null ? "" : "'" + t.getRouteId() + "' ") + "of template '"
                + t.getRouteTemplateRef() + "'";
        if (t.getRouteId() == null || t.getRouteId().isBlank()) {
            problems.add(new Problem(f.name(), line, what + " has no routeId"));
            return false;
        }
        if (!claimRouteId(routeIds, t.getRouteId(), new Origin(f.name(), line), problems)) {
            return false;
        }
        var template = model.getRouteTemplateDefinition(t.getRouteTemplateRef());
        if (template == null) {
            problems.add(new Problem(f.name(), line, what + ": no route template '" + t.getRouteTemplateRef()
                    + "' (known: " + String.join(", ", templateIds(model)) + ")"));
            return false;
        }
        if (!parametersKnown(f, line, what, template, t, problems)) {
            return false;
        }
        try {
            model.addRouteFromTemplatedRoute(t);
            return true;
        } catch (Exception ex) {
            problems.add(new Problem(f.name(), line, what + ": " + message(ex)));
            return false;
        }
    }

    /**
     * Camel ignores a parameter the template does not declare (a misspelt one silently leaves the default in force) and
     * passes any text to a switch: a parameter whose default is {@code true} or {@code false} must be one of the two, and
     * one of {@link #CHOICES} one of its words.
     */
    /** Template parameters that take one of a few words. */
    static final Map<String, List<String>> CHOICES = Map.of("dedupe", List.of("repository", KafkaBatch.SINK_DEDUPE));

    private static boolean parametersKnown(RouteFile f, int line, String what, RouteTemplateDefinition template,
            TemplatedRouteDefinition t, List<Problem> problems) {
        Map<String, String> declared = new LinkedHashMap<>();
        template.getTemplateParameters().forEach(p -> declared.put(p.getName(), p.getDefaultValue()));
        boolean ok = true;
        for (var p : t.getParameters() == null ? List.<TemplatedRouteParameterDefinition>of() : t.getParameters()) {
            if (!declared.containsKey(p.getName())) {
                problems.add(new Problem(f.name(), line, what + ": unknown parameter '" + p.getName() + "' (known: "
                        + String.join(", ", declared.keySet()) + ")"));
                ok = false;
            } else if (CHOICES.containsKey(p.getName()) && !CHOICES.get(p.getName()).contains(p.getValue())) {
                problems.add(new Problem(f.name(), line, what + ": parameter '" + p.getName() + "' must be one of "
                        + CHOICES.get(p.getName()) + ", not '" + p.getValue() + "'"));
                ok = false;
            } else if (("true".equals(declared.get(p.getName())) || "false".equals(declared.get(p.getName())))
                    && !"true".equals(p.getValue()) && !"false".equals(p.getValue())) {
                problems.add(new Problem(f.name(), line, what + ": parameter '" + p.getName() + "' must be true or "
                        + "false, not '" + p.getValue() + "'"));
                ok = false;
            }
        }
        return ok;
    }

    private static boolean claimRouteId(Map<String, Origin> routeIds, String id, Origin at, List<Problem> problems) {
        Origin first = routeIds.putIfAbsent(id, at);
        if (first != null) {
            problems.add(new Problem(at.file(), at.line(), "duplicate route id '" + id + "': already used at " + first
                    + " (Camel refuses duplicate route ids at startup)"));
            return false;
        }
        return true;
    }

    private List<String> checkModel(DefaultCamelContext camel, Model model, Map<String, Origin> routeIds,
            Map<String, String> templateOf, Set<String> brokenFlows, List<Problem> problems,
            List<Problem> warnings) {
        List<String> configurations = model.getRouteConfigurationDefinitions().stream()
                .map(RouteConfigurationDefinition::getId).filter(Objects::nonNull).toList();
        FactoryFinder components = camel.getCamelContextExtension()
                .getBootstrapFactoryFinder(DefaultComponentResolver.RESOURCE_PATH);

        Map<String, List<String>> consumers = new TreeMap<>(); // direct name -> route ids
        Map<String, List<String>> producers = new TreeMap<>();
        Map<String, Origin> origins = new HashMap<>();
        Map<String, String> sinkDedupe = new TreeMap<>(); // flowId -> its kafka-source route with dedupe sink
        for (RouteDefinition rd : model.getRouteDefinitions()) {
            String id = rd.getRouteId();
            Origin at = routeIds.getOrDefault(id, new Origin(rd.getResource() == null ? "?" : rd.getResource()
                    .getLocation(), line(Map.of(), null, rd)));
            origins.put(id, at);
            Map<String, Object> params = rd.getTemplateParameters() == null ? Map.of() : rd.getTemplateParameters();
            String fromTemplate = templateOf.containsKey(id) ? " (from template '" + templateOf.get(id) + "')" : "";

            String configIds = rd.getRouteConfigurationId();
            if (configIds != null && !configIds.contains("{{")) {
                for (String wanted : configIds.split(",")) {
                    String w = wanted.strip();
                    if (!w.isEmpty() && configurations.stream().noneMatch(c -> PatternHelper.matchPattern(c, w))) {
                        problems.add(new Problem(at.file(), at.line(), "route '" + id + "'" + fromTemplate
                                + ": routeConfigurationId '" + w + "' matches no routeConfiguration (known: "
                                + String.join(", ", configurations)
                                + "); Camel would run the route without its error handling (no dead letters)"));
                    }
                }
            }

            if ("kafka-source".equals(templateOf.get(id)) && KafkaBatch.SINK_DEDUPE.equals(params.get("dedupe"))) {
                sinkDedupe.put(String.valueOf(params.get("flowId")), id);
            }
            String from = resolve(rd.getInput().getEndpointUri(), params);
            checkScheme(components, from, id, fromTemplate, at, problems);
            direct(from).ifPresent(name -> addOnce(consumers, name, id));
            for (EndpointRequiredDefinition out : ProcessorDefinitionHelper.filterTypeInOutputs(rd.getOutputs(),
                    EndpointRequiredDefinition.class)) {
                String uri = resolve(out.getEndpointUri(), params);
                // a route of the file itself: the endpoint's own line; a templated route: the templatedRoute's
                Origin where = fromTemplate.isEmpty() && out instanceof LineNumberAware l && l.getLineNumber() > 0
                        ? new Origin(at.file(), l.getLineNumber()) : at;
                checkScheme(components, uri, id, fromTemplate, where, problems);
                direct(uri).ifPresent(name -> addOnce(producers, name, id));
            }
        }

        sinkDedupe.forEach((flow, source) -> {
            for (String sink : consumers.getOrDefault(DELIVER + flow, List.of())) {
                if (!"jdbc-sink".equals(templateOf.get(sink))) {
                    Origin at = origins.get(source);
                    problems.add(new Problem(at.file(), at.line(), "flow '" + flow + "': dedupe 'sink' (route " + source
                            + ") leaves duplicates to the sink, and only a jdbc-sink drops them (its table's unique "
                            + "event_id); route " + sink + " is " + (templateOf.containsKey(sink) ? "a " + templateOf.get(sink)
                                    : "not a jdbc-sink") + ": use dedupe 'repository'"));
                }
            }
        });
        List<String> flows = new ArrayList<>();
        for (var c : consumers.entrySet()) {
            String name = c.getKey();
            List<String> routes = c.getValue();
            if (routes.size() > 1) {
                Origin at = origins.get(routes.get(1));
                problems.add(new Problem(at.file(), at.line(), name.startsWith(DELIVER)
                        ? "flow '" + name.substring(DELIVER.length()) + "' has two sinks (routes "
                                + String.join(", ", routes) + "); a flowId has exactly one sink"
                        : "direct:" + name + " is consumed by two routes (" + String.join(", ", routes) + ")"));
            }
            if (name.startsWith(DELIVER) && !producers.containsKey(name)
                    && !brokenFlows.contains(name.substring(DELIVER.length()))) {
                Origin at = origins.get(routes.get(0));
                problems.add(new Problem(at.file(), at.line(), "flow '" + name.substring(DELIVER.length())
                        + "' has a sink (route " + routes.get(0) + ") but no source: add a templatedRoute of a source "
                        + "template (outbox-source, kafka-source...) with flowId " + name.substring(DELIVER.length())));
            }
        }
        for (var p : producers.entrySet()) {
            String name = p.getKey();
            List<String> routes = p.getValue();
            boolean flow = name.startsWith(DELIVER);
            if (flow) {
                flows.add(name.substring(DELIVER.length()));
            }
            if (flow && routes.size() > 1) {
                Origin first = origins.get(routes.get(0));
                Origin at = origins.get(routes.get(1));
                problems.add(new Problem(at.file(), at.line(), "flowId '" + name.substring(DELIVER.length())
                        + "' is used by two sources: route " + routes.get(1) + " and route " + routes.get(0)
                        + " at " + first + "; every source needs its own flowId"));
            }
            if (!consumers.containsKey(name) && !(flow && brokenFlows.contains(name.substring(DELIVER.length())))) {
                Origin at = origins.get(routes.get(0));
                if (flow) {
                    problems.add(new Problem(at.file(), at.line(), "flow '" + name.substring(DELIVER.length())
                            + "' has a source (route " + routes.get(0) + ") but no sink: add a templatedRoute of a sink "
                            + "template (jdbc-sink, http-sink...) with flowId " + name.substring(DELIVER.length())));
                } else {
                    // a warning only: the consumer may be a route this check does not load (Java)
                    warnings.add(new Problem(at.file(), at.line(), "route " + routes.get(0) + " sends to direct:"
                            + name + ", which no YAML route consumes"));
                }
            }
        }
        return flows;
    }

    private static void addOnce(Map<String, List<String>> routesByName, String name, String routeId) {
        List<String> routes = routesByName.computeIfAbsent(name, k -> new ArrayList<>());
        if (!routes.contains(routeId)) {
            routes.add(routeId);
        }
    }

    private void checkScheme(FactoryFinder components, String uri, String routeId, String fromTemplate, Origin at,
            List<Problem> problems) {
        if (uri == null) {
            return;
        }
        int colon = uri.indexOf(':');
        String scheme = colon < 0 ? uri : uri.substring(0, colon);
        if (scheme.isEmpty() || scheme.contains("{{") || scheme.contains("${")) {
            return; // decided by configuration at runtime
        }
        if (components.findOptionalClass(scheme).isEmpty() && !extraComponents.test(scheme)) {
            problems.add(new Problem(at.file(), at.line(), "route '" + routeId + "'" + fromTemplate + ": endpoint '"
                    + uri + "' has an unknown component '" + scheme + "' (not a Camel component of this hub)"));
        }
    }

    /** The name of a direct: endpoint, without options. */
    private static Optional<String> direct(String uri) {
        if (uri == null || !uri.startsWith("direct:")) {
            return Optional.empty();
        }
        String name = uri.substring("direct:".length());
        if (name.startsWith("//")) {
            name = name.substring(2);
        }
        int q = name.indexOf('?');
        name = q < 0 ? name : name.substring(0, q);
        // a name set by configuration or at runtime is not known here
        return name.contains("{{") || name.contains("${") ? Optional.empty() : Optional.of(name);
    }

    /** Replaces the template parameters in a URI; other placeholders (application configuration) are kept. */
    static String resolve(String uri, Map<String, Object> params) {
        if (uri == null) {
            return null;
        }
        String s = uri;
        for (int round = 0; round < 5 && s.contains("{{"); round++) {
            Matcher m = PLACEHOLDER.matcher(s);
            StringBuilder sb = new StringBuilder();
            boolean changed = false;
            while (m.find()) {
                Object v = params.get(m.group(1).strip());
                if (v != null) {
                    changed = true;
                }
                m.appendReplacement(sb, Matcher.quoteReplacement(v == null ? m.group() : String.valueOf(v)));
            }
            m.appendTail(sb);
            s = sb.toString();
            if (!changed) {
                break;
            }
        }
        return s;
    }

    private static List<String> templateIds(Model model) {
        return model.getRouteTemplateDefinitions().stream().map(t -> t.getId()).sorted().toList();
    }

    private static int line(Map<String, Integer> lines, String id, RouteDefinition rd) {
        if (id != null && lines.containsKey(id)) {
            return lines.get(id);
        }
        return rd.getInput() != null && rd.getInput().getLineNumber() > 0 ? rd.getInput().getLineNumber() : 0;
    }

    /**
     * Line of each top-level item's id (route id, templatedRoute routeId, routeTemplate id), 1-based, as Camel keeps
     * no line for templated routes; and a warning for each kebab-case key (Camel 4.13 removed most of them, the ones
     * that still load will follow).
     */
    private static Map<String, Integer> scan(RouteFile f, List<Problem> warnings) {
        Map<String, Integer> lines = new LinkedHashMap<>();
        Optional<Node> root;
        try {
            root = new Compose(LoadSettings.builder().setLabel(f.name()).build()).composeString(f.text());
        } catch (RuntimeException e) {
            return lines; // the DSL loader reports it with its line
        }
        if (root.isEmpty()) {
            return lines;
        }
        kebabKeys(f, root.get(), warnings);
        if (!(root.get() instanceof SequenceNode seq)) {
            return lines;
        }
        for (Node item : seq.getValue()) {
            if (!(item instanceof MappingNode top)) {
                continue;
            }
            for (NodeTuple kind : top.getValue()) {
                if (!(kind.getValueNode() instanceof MappingNode body)) {
                    continue;
                }
                int kindLine = kind.getKeyNode().getStartMark().map(m -> m.getLine() + 1).orElse(0);
                for (NodeTuple field : body.getValue()) {
                    if (field.getKeyNode() instanceof ScalarNode k && field.getValueNode() instanceof ScalarNode v
                            && ("id".equals(k.getValue()) || "routeId".equals(k.getValue()))) {
                        lines.putIfAbsent(v.getValue(), kindLine);
                    }
                }
            }
        }
        return lines;
    }

    private static void kebabKeys(RouteFile f, Node node, List<Problem> warnings) {
        if (node instanceof SequenceNode seq) {
            seq.getValue().forEach(n -> kebabKeys(f, n, warnings));
        } else if (node instanceof MappingNode map) {
            for (NodeTuple t : map.getValue()) {
                if (t.getKeyNode() instanceof ScalarNode k) {
                    if (KEBAB.matcher(k.getValue()).matches()) {
                        warnings.add(new Problem(f.name(), k.getStartMark().map(m -> m.getLine() + 1).orElse(0),
                                "kebab-case key '" + k.getValue() + "': write it camelCase ('"
                                        + StringHelper.dashToCamelCase(k.getValue())
                                        + "'); Camel 4.13 removed kebab-case keys, the rest will follow"));
                    }
                    if ("parameters".equals(k.getValue()) || "properties".equals(k.getValue())) {
                        continue; // option and bean property names, not DSL keys
                    }
                }
                kebabKeys(f, t.getValueNode(), warnings);
            }
        }
    }

    private static Problem yamlProblem(RouteFile f, Exception e) {
        for (Throwable t = e; t != null; t = t.getCause() == t ? null : t.getCause()) {
            if (t instanceof MarkedYamlEngineException y) {
                int line = y.getProblemMark().map(m -> m.getLine() + 1).orElse(0);
                String text = y.getProblem();
                if (y.getContext() != null && !y.getContext().isBlank()) {
                    text = y.getContext() + ": " + text;
                }
                return new Problem(f.name(), line, text);
            }
        }
        return new Problem(f.name(), 0, message(e));
    }

    /** The innermost useful message of an exception chain. */
    static String message(Throwable e) {
        Throwable t = e;
        while (t.getCause() != null && t.getCause() != t
                && (t.getMessage() == null || t.getMessage().startsWith(t.getCause().getClass().getName())
                        || t.getMessage().contains(String.valueOf(t.getCause().getMessage())))) {
            t = t.getCause();
        }
        String m = t.getMessage() == null ? t.getClass().getSimpleName() : t.getMessage();
        return StringHelper.removeCRLF(m);
    }
}
