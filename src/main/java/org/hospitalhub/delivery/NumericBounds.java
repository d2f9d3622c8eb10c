package org.hospitalhub.delivery;

import java.util.Map;
import java.util.Set;

import com.fasterxml.jackson.databind.JsonNode;
import com.networknt.schema.ExecutionContext;
import com.networknt.schema.JsonMetaSchema;
import com.networknt.schema.JsonNodePath;
import com.networknt.schema.JsonSchema;
import com.networknt.schema.JsonSchemaException;
import com.networknt.schema.JsonSchemaFactory;
import com.networknt.schema.JsonValidator;
import com.networknt.schema.Keyword;
import com.networknt.schema.SchemaLocation;
import com.networknt.schema.SpecVersion;
import com.networknt.schema.ValidationContext;
import com.networknt.schema.ValidationMessage;
import com.networknt.schema.ValidatorTypeCode;
import com.networknt.schema.Vocabulary;

/**
 * The JSON Schema bounds {@code minimum}, {@code exclusiveMinimum}, {@code maximum} and {@code exclusiveMaximum} with a
 * quick yes for the common case, in front of the library's own validators.
 * <p>
 * The library compares every number as a {@link java.math.BigDecimal} made from text: its bound's text is parsed again
 * on every check, and a fractional value is first printed ({@link Double#toString}) and then parsed. In a Kafka flow
 * that was a third of all schema validation (an amount and the items' prices and quantities per charge). Here, when
 * the bound is a whole number a double holds exactly (|bound| &le; 2<sup>53</sup>), a value read as an int or a long is
 * compared exactly and a value read as a double is compared as a double, and a value clearly within the bound is
 * passed at once. Everything else (a value on the bound or beyond it, a fractional or huge bound, big numbers, text)
 * goes to the library's validator, which gives the answer and the error message it always gave. A double strictly on
 * the right side of a bound that is itself a double is so for its decimal text too (that text rounds to the double, and
 * the bound lies outside the double's rounding interval), so the quick answer is never one the library would not give.
 */
final class NumericBounds implements Keyword {

    private static final long EXACT = 1L << 53;

    private final ValidatorTypeCode library;
    private final boolean lower;
    private final boolean exclusive;

    private NumericBounds(ValidatorTypeCode library, boolean lower, boolean exclusive) {
        this.library = library;
        this.lower = lower;
        this.exclusive = exclusive;
    }

    /**
     * A 2020-12 schema factory whose meta-schema (same IRI) has these four bounds in place of the library's: they
     * belong to the validation vocabulary, whose keywords a 2020-12 meta-schema takes from its vocabulary factory.
     */
    static JsonSchemaFactory factory() {
        Map<String, Keyword> bounds = Map.of(
                "minimum", new NumericBounds(ValidatorTypeCode.MINIMUM, true, false),
                "exclusiveMinimum", new NumericBounds(ValidatorTypeCode.EXCLUSIVE_MINIMUM, true, true),
                "maximum", new NumericBounds(ValidatorTypeCode.MAXIMUM, false, false),
                "exclusiveMaximum", new NumericBounds(ValidatorTypeCode.EXCLUSIVE_MAXIMUM, false, true));
        Vocabulary standard = Vocabulary.V202012_VALIDATION;
        Vocabulary validation = new Vocabulary(standard.getIri(), standard.getKeywords().stream()
                .map(k -> bounds.getOrDefault(k.getValue(), k)).toArray(Keyword[]::new));
        if (validation.getKeywords().stream().filter(k -> k instanceof NumericBounds).count() != bounds.size()) {
            throw new IllegalStateException("the JSON Schema library's validation vocabulary has no " + bounds.keySet());
        }
        JsonMetaSchema metaSchema = JsonMetaSchema.builder(JsonMetaSchema.getV202012())
                .vocabularyFactory(iri -> iri.equals(validation.getIri()) ? validation : null) // null: the library's
                .build();
        return JsonSchemaFactory.builder(JsonSchemaFactory.getInstance(SpecVersion.VersionFlag.V202012))
                .metaSchema(metaSchema).build();
    }

    @Override
    public String getValue() {
        return library.getValue();
    }

    @Override
    public JsonValidator newValidator(SchemaLocation schemaLocation, JsonNodePath evaluationPath, JsonNode schemaNode,
            JsonSchema parentSchema, ValidationContext validationContext) {
        JsonValidator own = library.newValidator(schemaLocation, evaluationPath, schemaNode, parentSchema, validationContext);
        JsonNode siblings = parentSchema.getSchemaNode();
        boolean draft4Flag = !exclusive && siblings.path(lower ? "exclusiveMinimum" : "exclusiveMaximum").isBoolean();
        if (draft4Flag || !schemaNode.isIntegralNumber() || !schemaNode.canConvertToLong()
                || Math.abs(schemaNode.longValue()) > EXACT) {
            return own; // a bound made exclusive by a draft-4 flag, fractional or huge: the library alone
        }
        // with "type": "integer" the library compares a fractional value by its whole part (it is refused for its type
        // anyway); the quick check leaves such values to it, so that the same messages come out
        boolean integerTyped = "integer".equals(siblings.path("type").asText());
        return new Quick(own, schemaNode.longValue(), integerTyped);
    }

    private final class Quick implements JsonValidator {
        private final JsonValidator own;
        private final long bound;
        private final boolean integerTyped;

        Quick(JsonValidator own, long bound, boolean integerTyped) {
            this.own = own;
            this.bound = bound;
            this.integerTyped = integerTyped;
        }

        /** True only when the value is certainly within the bound; false means "ask the library". */
        boolean clearlyWithin(JsonNode n) {
            if (n.isInt() || n.isLong()) {
                int c = Long.compare(n.longValue(), bound);
                c = lower ? c : -c;
                return c > 0 || c == 0 && !exclusive;
            }
            if (n.isDouble() && !integerTyped) {
                double d = n.doubleValue();
                return lower ? d > bound : d < bound; // on the bound: the library decides, from the decimal text
            }
            return false;
        }

        @Override
        public Set<ValidationMessage> validate(ExecutionContext ctx, JsonNode node, JsonNode root, JsonNodePath at) {
            return clearlyWithin(node) ? Set.of() : own.validate(ctx, node, root, at);
        }

        @Override
        public Set<ValidationMessage> walk(ExecutionContext ctx, JsonNode node, JsonNode root, JsonNodePath at,
                boolean shouldValidateSchema) {
            return own.walk(ctx, node, root, at, shouldValidateSchema);
        }

        @Override
        public void preloadJsonSchema() throws JsonSchemaException {
            own.preloadJsonSchema();
        }

        @Override
        public SchemaLocation getSchemaLocation() {
            return own.getSchemaLocation();
        }

        @Override
        public JsonNodePath getEvaluationPath() {
            return own.getEvaluationPath();
        }

        @Override
        public String getKeyword() {
            return own.getKeyword();
        }
    }
}
