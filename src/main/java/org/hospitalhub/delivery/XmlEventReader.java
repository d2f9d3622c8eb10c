package org.hospitalhub.delivery;

import java.io.IOException;
import java.io.StringReader;
import java.util.ArrayList;
import java.util.List;

import javax.xml.XMLConstants;
import javax.xml.parsers.DocumentBuilder;
import javax.xml.parsers.DocumentBuilderFactory;
import javax.xml.parsers.ParserConfigurationException;
import javax.xml.transform.dom.DOMSource;
import javax.xml.validation.Schema;
import javax.xml.validation.SchemaFactory;
import javax.xml.validation.Validator;

import jakarta.enterprise.context.ApplicationScoped;

import org.w3c.dom.Document;
import org.w3c.dom.Element;
import org.w3c.dom.Node;
import org.xml.sax.InputSource;
import org.xml.sax.SAXException;
import org.xml.sax.SAXParseException;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;

/**
 * Reads events from legacy XML web-service bodies ({@code <event>} or {@code <events>}), validated by
 * {@code xsd/event.xsd}. DTDs and external entities are refused outright (no XXE, no entity expansion). Payload
 * elements become JSON fields, their text coerced to the types the event type's JSON Schema asks for.
 */
@ApplicationScoped
public class XmlEventReader {

    public static final String NS = "urn:hospitalhub:event:1";

    private final Schema schema;
    private final EventParser parser;
    private final SchemaRegistry schemas;
    private final ObjectMapper mapper = new ObjectMapper();

    public XmlEventReader(EventParser parser, SchemaRegistry schemas) throws SAXException {
        this.parser = parser;
        this.schemas = schemas;
        SchemaFactory sf = SchemaFactory.newInstance(XMLConstants.W3C_XML_SCHEMA_NS_URI);
        sf.setProperty(XMLConstants.ACCESS_EXTERNAL_DTD, "");
        sf.setProperty(XMLConstants.ACCESS_EXTERNAL_SCHEMA, "");
        this.schema = sf.newSchema(XmlEventReader.class.getClassLoader().getResource("xsd/event.xsd"));
    }

    public List<Event> read(String xml) {
        Document doc = parse(xml);
        try {
            Validator v = schema.newValidator();
            v.setProperty(XMLConstants.ACCESS_EXTERNAL_DTD, "");
            v.setProperty(XMLConstants.ACCESS_EXTERNAL_SCHEMA, "");
            v.validate(new DOMSource(doc));
        } catch (SAXParseException e) {
            throw new InvalidEventException("", "xsd", "XML does not match xsd/event.xsd at line " + e.getLineNumber()
                    + ": " + e.getMessage());
        } catch (SAXException | IOException e) {
            throw new InvalidEventException("", "xsd", "XML does not match xsd/event.xsd: " + e.getMessage());
        }
        Element root = doc.getDocumentElement();
        List<Element> eventElements = "events".equals(root.getLocalName()) ? children(root) : List.of(root);
        List<Event> events = new ArrayList<>();
        for (int i = 0; i < eventElements.size(); i++) {
            try {
                events.add(parser.validate(toEnvelope(eventElements.get(i))));
            } catch (InvalidEventException e) {
                throw eventElements.size() == 1 ? e : e.at("[" + i + "]");
            }
        }
        return events;
    }

    /**
     * Parses untrusted XML with DOCTYPE declarations, external entities, external DTDs/schemas and XInclude all off;
     * malformed input is an {@link InvalidEventException} (rule {@code xml}) with the line. Shared by every XML ingest.
     */
    public static Document parse(String xml) {
        try {
            DocumentBuilderFactory f = DocumentBuilderFactory.newInstance();
            f.setNamespaceAware(true);
            f.setFeature("http://apache.org/xml/features/disallow-doctype-decl", true);
            f.setFeature("http://xml.org/sax/features/external-general-entities", false);
            f.setFeature("http://xml.org/sax/features/external-parameter-entities", false);
            f.setFeature("http://apache.org/xml/features/nonvalidating/load-external-dtd", false);
            f.setFeature(XMLConstants.FEATURE_SECURE_PROCESSING, true);
            f.setAttribute(XMLConstants.ACCESS_EXTERNAL_DTD, "");
            f.setAttribute(XMLConstants.ACCESS_EXTERNAL_SCHEMA, "");
            f.setXIncludeAware(false);
            f.setExpandEntityReferences(false);
            DocumentBuilder b = f.newDocumentBuilder();
            b.setErrorHandler(null);
            return b.parse(new InputSource(new StringReader(xml)));
        } catch (SAXParseException e) {
            String msg = e.getMessage() != null && e.getMessage().contains("DOCTYPE")
                    ? "DOCTYPE declarations (and so external entities) are not allowed"
                    : e.getMessage();
            throw new InvalidEventException("", "xml", "malformed XML at line " + e.getLineNumber() + ": " + msg);
        } catch (SAXException | IOException e) {
            throw new InvalidEventException("", "xml", "malformed XML: " + e.getMessage());
        } catch (ParserConfigurationException e) {
            throw new IllegalStateException(e);
        }
    }

    private ObjectNode toEnvelope(Element event) {
        ObjectNode env = mapper.createObjectNode();
        String type = null;
        for (Element child : children(event)) {
            String name = child.getLocalName();
            if ("payload".equals(name)) {
                continue;
            }
            env.put(name, child.getTextContent().strip());
            if ("type".equals(name)) {
                type = child.getTextContent().strip();
            }
        }
        JsonNode typeSchema = type == null ? null : schemas.rawSchema(type).orElse(null);
        for (Element child : children(event)) {
            if ("payload".equals(child.getLocalName())) {
                env.set("payload", object(child, typeSchema));
            }
        }
        return env;
    }

    private ObjectNode object(Element el, JsonNode schemaNode) {
        ObjectNode o = mapper.createObjectNode();
        for (Element c : children(el)) {
            JsonNode propSchema = schemaNode == null ? null : schemaNode.path("properties").path(c.getLocalName());
            if (!children(c).isEmpty()) {
                o.set(c.getLocalName(), object(c, propSchema));
            } else {
                o.set(c.getLocalName(), scalar(c.getTextContent().strip(), propSchema));
            }
        }
        return o;
    }

    private JsonNode scalar(String text, JsonNode propSchema) {
        String t = propSchema == null ? "string" : propSchema.path("type").asText("string");
        try {
            return switch (t) {
                case "integer" -> mapper.getNodeFactory().numberNode(new java.math.BigInteger(text));
                case "number" -> mapper.getNodeFactory().numberNode(new java.math.BigDecimal(text));
                case "boolean" -> "true".equals(text) || "false".equals(text)
                        ? mapper.getNodeFactory().booleanNode(Boolean.parseBoolean(text))
                        : mapper.getNodeFactory().textNode(text);
                default -> mapper.getNodeFactory().textNode(text);
            };
        } catch (NumberFormatException e) {
            return mapper.getNodeFactory().textNode(text); // the schema check then names the field
        }
    }

    private static List<Element> children(Element e) {
        List<Element> out = new ArrayList<>();
        for (Node n = e.getFirstChild(); n != null; n = n.getNextSibling()) {
            if (n instanceof Element el) {
                out.add(el);
            }
        }
        return out;
    }
}
