// libsentencepiece calls; the only file that includes sentencepiece_processor.h.
#include "model/tokenizer/spm_processor.h"

#include "sentencepiece_processor.h"

namespace iquest {

SpmProcessor::SpmProcessor() : processor_(new sentencepiece::SentencePieceProcessor()) {}
SpmProcessor::~SpmProcessor() = default;

std::unique_ptr<SpmProcessor> SpmProcessor::Load(const std::string& path, std::string* error) {
  std::unique_ptr<SpmProcessor> spm(new SpmProcessor());
  const auto status = spm->processor_->Load(path);
  if (!status.ok()) {
    *error = status.ToString();
    return nullptr;
  }
  return spm;
}

bool SpmProcessor::Encode(std::string_view text, std::vector<int>* ids, std::string* error) const {
  const auto status = processor_->Encode(text, ids);
  if (!status.ok()) *error = status.ToString();
  return status.ok();
}

std::string SpmProcessor::Decode(const std::vector<int>& ids) const {
  std::string text;
  if (!processor_->Decode(ids, &text).ok()) text.clear();
  return text;
}

int SpmProcessor::size() const { return processor_->GetPieceSize(); }
std::string SpmProcessor::Piece(int id) const { return processor_->IdToPiece(id); }
int SpmProcessor::PieceToId(std::string_view piece) const { return processor_->PieceToId(piece); }
bool SpmProcessor::IsByte(int id) const { return processor_->IsByte(id); }
bool SpmProcessor::IsControl(int id) const { return processor_->IsControl(id); }
bool SpmProcessor::IsUnknown(int id) const { return processor_->IsUnknown(id); }
int SpmProcessor::bos_id() const { return processor_->bos_id(); }
int SpmProcessor::eos_id() const { return processor_->eos_id(); }
int SpmProcessor::unk_id() const { return processor_->unk_id(); }

bool SpmProcessor::add_dummy_prefix() const {
  // The model proto's normalizer_spec is not in Debian's headers; ask the model instead.
  std::vector<std::string> pieces;
  if (!processor_->Encode("a", &pieces).ok() || pieces.empty()) return false;
  return pieces[0].rfind("\xE2\x96\x81", 0) == 0;
}

}  // namespace iquest
