"""The data layer: TFRecord schema, writer, input pipelines, semantic maps, demo data, skin tone."""
