// The style, markup and script of models/html_report.h's pages, as text the writer fills in around the data.
// Internal to the library: not installed.
#pragma once

namespace gradformer::models::html_pages {

extern const char* const common_style;
extern const char* const attention_style;
extern const char* const attention_body;
extern const char* const attention_script;
extern const char* const training_style;
extern const char* const training_body;
extern const char* const training_script;

}  // namespace gradformer::models::html_pages
