// Follows jinja2/parser.py function by function (parse_or, parse_compare, parse_unary, ...), so
// that precedence matches: filters and tests bind tighter than arithmetic, `~` sits between
// + and *, and `not` applies to a whole comparison.
#include "model/tokenizer/jinja/parser.h"

#include <initializer_list>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "model/tokenizer/jinja/lexer.h"

namespace iquest::jinja {
namespace {

// Deeper nesting than any real template, shallow enough that the recursive parser and evaluator
// stay far from the end of the stack.
constexpr int kMaxNesting = 200;

class Parser {
 public:
  explicit Parser(std::vector<Token> tokens) : tokens_(std::move(tokens)) {}

  absl::StatusOr<Body> ParseAll() {
    ASSIGN_OR_RETURN(Body body, ParseBody({}));
    if (Cur().kind != TokenKind::kEof) return Error(Cur(), "unexpected tag");
    return body;
  }

 private:
  const Token& Cur() const { return tokens_[pos_]; }
  const Token& Peek(size_t ahead = 1) const {
    return tokens_[std::min(pos_ + ahead, tokens_.size() - 1)];
  }
  void Advance() {
    if (pos_ + 1 < tokens_.size()) ++pos_;
  }
  bool IsOp(const char* op) const { return Cur().kind == TokenKind::kOperator && Cur().text == op; }
  bool IsName(const char* name) const {
    return Cur().kind == TokenKind::kName && Cur().text == name;
  }
  bool SkipOp(const char* op) {
    if (!IsOp(op)) return false;
    Advance();
    return true;
  }
  bool SkipName(const char* name) {
    if (!IsName(name)) return false;
    Advance();
    return true;
  }

  absl::Status Error(const Token& at, const std::string& what) const {
    return absl::InvalidArgumentError(
        absl::StrCat("template line ", at.line, ", column ", at.column, ": ", what));
  }
  std::string Describe(const Token& token) const {
    switch (token.kind) {
      case TokenKind::kEof:
        return "end of template";
      case TokenKind::kText:
        return "text";
      case TokenKind::kBlockEnd:
        return "'%}'";
      case TokenKind::kVarEnd:
        return "'}}'";
      case TokenKind::kString:
        return "a string";
      default:
        return absl::StrCat("'", token.text, "'");
    }
  }
  absl::Status ExpectOp(const char* op) {
    if (SkipOp(op)) return absl::OkStatus();
    return Error(Cur(), absl::StrCat("expected '", op, "', got ", Describe(Cur())));
  }
  absl::Status ExpectKind(TokenKind kind, const char* what) {
    if (Cur().kind == kind) {
      Advance();
      return absl::OkStatus();
    }
    return Error(Cur(), absl::StrCat("expected ", what, ", got ", Describe(Cur())));
  }
  absl::Status ExpectBlockEnd() { return ExpectKind(TokenKind::kBlockEnd, "'%}'"); }
  absl::StatusOr<std::string> ExpectName() {
    if (Cur().kind != TokenKind::kName) {
      return Error(Cur(), absl::StrCat("expected a name, got ", Describe(Cur())));
    }
    std::string name = Cur().text;
    Advance();
    return name;
  }

  // RAII nesting counter for the recursive functions.
  struct Nest {
    explicit Nest(int* depth) : depth(depth) { ++*depth; }
    ~Nest() { --*depth; }
    int* depth;
  };
  absl::Status CheckNesting() const {
    if (depth_ > kMaxNesting) return Error(Cur(), "template nested too deeply");
    return absl::OkStatus();
  }

  ExprPtr MakeExpr(ExprKind kind, int line) {
    auto expr = std::make_unique<Expr>();
    expr->kind = kind;
    expr->line = line;
    return expr;
  }

  // ---- statements ----

  // Statements until `{% <one of end_tags>`; the stream is left at that tag's name.
  absl::StatusOr<Body> ParseBody(std::initializer_list<const char*> end_tags) {
    Nest nest(&depth_);
    RETURN_IF_ERROR(CheckNesting());
    Body body;
    while (true) {
      const Token& token = Cur();
      if (token.kind == TokenKind::kEof) {
        if (end_tags.size() == 0) return body;
        std::string names;
        for (const char* tag : end_tags)
          absl::StrAppend(&names, names.empty() ? "" : " or ", "'", tag, "'");
        return Error(token, absl::StrCat("unexpected end of template, expected ", names));
      }
      if (token.kind == TokenKind::kText) {
        auto stmt = std::make_unique<Stmt>();
        stmt->kind = StmtKind::kText;
        stmt->line = token.line;
        stmt->name = token.text;
        body.push_back(std::move(stmt));
        Advance();
      } else if (token.kind == TokenKind::kVarBegin) {
        Advance();
        auto stmt = std::make_unique<Stmt>();
        stmt->kind = StmtKind::kOutput;
        stmt->line = token.line;
        ASSIGN_OR_RETURN(ExprPtr expr, ParseTuple(true));
        stmt->exprs.push_back(std::move(expr));
        RETURN_IF_ERROR(ExpectKind(TokenKind::kVarEnd, "'}}'"));
        body.push_back(std::move(stmt));
      } else if (token.kind == TokenKind::kBlockBegin) {
        const Token& name = Peek();
        for (const char* tag : end_tags) {
          if (name.kind == TokenKind::kName && name.text == tag) {
            Advance();
            return body;
          }
        }
        Advance();
        ASSIGN_OR_RETURN(std::unique_ptr<Stmt> stmt, ParseStatement());
        body.push_back(std::move(stmt));
      } else {
        return Error(token, absl::StrCat("unexpected ", Describe(token)));
      }
    }
  }

  absl::StatusOr<std::unique_ptr<Stmt>> ParseStatement() {
    const Token& token = Cur();
    if (token.kind != TokenKind::kName) return Error(token, "expected a tag name");
    auto stmt = std::make_unique<Stmt>();
    stmt->line = token.line;
    const std::string tag = token.text;
    Advance();
    if (tag == "for") {
      RETURN_IF_ERROR(ParseFor(stmt.get()));
    } else if (tag == "if") {
      RETURN_IF_ERROR(ParseIf(stmt.get()));
    } else if (tag == "set") {
      RETURN_IF_ERROR(ParseSet(stmt.get()));
    } else if (tag == "macro") {
      RETURN_IF_ERROR(ParseMacro(stmt.get()));
    } else if (tag == "call") {
      RETURN_IF_ERROR(ParseCallBlock(stmt.get()));
    } else if (tag == "filter") {
      stmt->kind = StmtKind::kFilterBlock;
      auto block = MakeExpr(ExprKind::kBlockValue, token.line);
      ASSIGN_OR_RETURN(ExprPtr filters,
                       ParseFilters(std::move(block), /*first_without_pipe=*/true));
      stmt->exprs.push_back(std::move(filters));
      RETURN_IF_ERROR(ParseSimpleBody(stmt.get(), "endfilter"));
    } else if (tag == "break" || tag == "continue") {
      if (loop_depth_ == 0) return Error(token, absl::StrCat("'", tag, "' outside of a loop"));
      stmt->kind = tag == "break" ? StmtKind::kBreak : StmtKind::kContinue;
      RETURN_IF_ERROR(ExpectBlockEnd());
    } else if (tag == "generation") {
      stmt->kind = StmtKind::kScope;
      RETURN_IF_ERROR(ParseSimpleBody(stmt.get(), "endgeneration"));
    } else {
      return Error(token, absl::StrCat("unknown tag '", tag, "'"));
    }
    return stmt;
  }

  // `%} body {% end_tag %}`.
  absl::Status ParseSimpleBody(Stmt* stmt, const char* end_tag) {
    RETURN_IF_ERROR(ExpectBlockEnd());
    ASSIGN_OR_RETURN(Body body, ParseBody({end_tag}));
    stmt->bodies.push_back(std::move(body));
    Advance();
    return ExpectBlockEnd();
  }

  // A name or a tuple of names: `x`, `k, v`, `(k, v)`.
  absl::Status ParseTargets(std::vector<std::string>* targets) {
    const bool paren = SkipOp("(");
    do {
      ASSIGN_OR_RETURN(std::string name, ExpectName());
      targets->push_back(std::move(name));
    } while (SkipOp(","));
    if (paren) RETURN_IF_ERROR(ExpectOp(")"));
    return absl::OkStatus();
  }

  absl::Status ParseFor(Stmt* stmt) {
    stmt->kind = StmtKind::kFor;
    RETURN_IF_ERROR(ParseTargets(&stmt->targets));
    if (!SkipName("in")) return Error(Cur(), "expected 'in'");
    ASSIGN_OR_RETURN(ExprPtr iter, ParseTuple(false));
    stmt->exprs.push_back(std::move(iter));
    if (SkipName("if")) {
      ASSIGN_OR_RETURN(ExprPtr filter, ParseExpression(true));
      stmt->exprs.push_back(std::move(filter));
    } else {
      stmt->exprs.push_back(nullptr);
    }
    if (IsName("recursive")) return Error(Cur(), "recursive loops are not supported");
    RETURN_IF_ERROR(ExpectBlockEnd());
    ++loop_depth_;
    ASSIGN_OR_RETURN(Body body, ParseBody({"endfor", "else"}));
    --loop_depth_;
    stmt->bodies.push_back(std::move(body));
    Body else_body;
    if (SkipName("else")) {
      RETURN_IF_ERROR(ExpectBlockEnd());
      ASSIGN_OR_RETURN(else_body, ParseBody({"endfor"}));
    }
    stmt->bodies.push_back(std::move(else_body));
    Advance();
    return ExpectBlockEnd();
  }

  absl::Status ParseIf(Stmt* stmt) {
    stmt->kind = StmtKind::kIf;
    while (true) {
      ASSIGN_OR_RETURN(ExprPtr cond, ParseTuple(false));
      stmt->exprs.push_back(std::move(cond));
      RETURN_IF_ERROR(ExpectBlockEnd());
      ASSIGN_OR_RETURN(Body body, ParseBody({"elif", "else", "endif"}));
      stmt->bodies.push_back(std::move(body));
      if (SkipName("elif")) continue;
      Body else_body;
      if (SkipName("else")) {
        RETURN_IF_ERROR(ExpectBlockEnd());
        ASSIGN_OR_RETURN(else_body, ParseBody({"endif"}));
      }
      stmt->bodies.push_back(std::move(else_body));
      Advance();
      return ExpectBlockEnd();
    }
  }

  absl::Status ParseSet(Stmt* stmt) {
    if (Cur().kind == TokenKind::kName && Peek().kind == TokenKind::kOperator &&
        Peek().text == ".") {
      stmt->kind = StmtKind::kSet;
      stmt->name = Cur().text;
      Advance();
      Advance();
      ASSIGN_OR_RETURN(stmt->attr, ExpectName());
      RETURN_IF_ERROR(ExpectOp("="));
      ASSIGN_OR_RETURN(ExprPtr value, ParseTuple(true));
      stmt->exprs.push_back(std::move(value));
      return ExpectBlockEnd();
    }
    RETURN_IF_ERROR(ParseTargets(&stmt->targets));
    if (SkipOp("=")) {
      stmt->kind = StmtKind::kSet;
      ASSIGN_OR_RETURN(ExprPtr value, ParseTuple(true));
      stmt->exprs.push_back(std::move(value));
      return ExpectBlockEnd();
    }
    if (stmt->targets.size() != 1) return Error(Cur(), "expected '='");
    stmt->kind = StmtKind::kSetBlock;
    stmt->name = stmt->targets[0];
    auto block = MakeExpr(ExprKind::kBlockValue, stmt->line);
    ASSIGN_OR_RETURN(ExprPtr filters, ParseFilters(std::move(block), /*first_without_pipe=*/false));
    stmt->exprs.push_back(std::move(filters));
    return ParseSimpleBody(stmt, "endset");
  }

  // `(a, b=default, ...)` of a macro or a call block; defaults may be null.
  absl::Status ParseSignature(Stmt* stmt) {
    RETURN_IF_ERROR(ExpectOp("("));
    while (!IsOp(")")) {
      if (!stmt->targets.empty()) RETURN_IF_ERROR(ExpectOp(","));
      if (IsOp(")")) break;
      ASSIGN_OR_RETURN(std::string name, ExpectName());
      stmt->targets.push_back(std::move(name));
      if (SkipOp("=")) {
        ASSIGN_OR_RETURN(ExprPtr value, ParseExpression(true));
        stmt->exprs.push_back(std::move(value));
      } else {
        stmt->exprs.push_back(nullptr);
      }
    }
    return ExpectOp(")");
  }

  absl::Status ParseMacro(Stmt* stmt) {
    stmt->kind = StmtKind::kMacro;
    ASSIGN_OR_RETURN(stmt->name, ExpectName());
    RETURN_IF_ERROR(ParseSignature(stmt));
    return ParseSimpleBody(stmt, "endmacro");
  }

  absl::Status ParseCallBlock(Stmt* stmt) {
    stmt->kind = StmtKind::kCallBlock;
    if (IsOp("(")) RETURN_IF_ERROR(ParseSignature(stmt));
    // The call goes last in exprs, after the caller's defaults.
    const Token& at = Cur();
    ASSIGN_OR_RETURN(ExprPtr call, ParseExpression(true));
    if (call->kind != ExprKind::kCall) return Error(at, "expected a call");
    stmt->exprs.push_back(std::move(call));
    return ParseSimpleBody(stmt, "endcall");
  }

  // ---- expressions ----

  // parse_tuple: `a`, or `a, b` as a tuple.
  absl::StatusOr<ExprPtr> ParseTuple(bool with_condexpr) {
    const int line = Cur().line;
    ASSIGN_OR_RETURN(ExprPtr first, ParseExpression(with_condexpr));
    if (!IsOp(",")) return first;
    auto tuple = MakeExpr(ExprKind::kTuple, line);
    tuple->children.push_back(std::move(first));
    while (SkipOp(",")) {
      if (AtExpressionEnd()) break;
      ASSIGN_OR_RETURN(ExprPtr item, ParseExpression(with_condexpr));
      tuple->children.push_back(std::move(item));
    }
    return tuple;
  }

  bool AtExpressionEnd() const {
    const TokenKind kind = Cur().kind;
    return kind == TokenKind::kBlockEnd || kind == TokenKind::kVarEnd || IsOp(")") || IsOp("]") ||
           IsOp("}") || IsName("in") || IsName("if") || kind == TokenKind::kEof;
  }

  absl::StatusOr<ExprPtr> ParseExpression(bool with_condexpr) {
    Nest nest(&depth_);
    RETURN_IF_ERROR(CheckNesting());
    ASSIGN_OR_RETURN(ExprPtr expr, ParseOr());
    if (!with_condexpr) return expr;
    while (IsName("if")) {
      const int line = Cur().line;
      Advance();
      auto cond = MakeExpr(ExprKind::kCondition, line);
      ASSIGN_OR_RETURN(ExprPtr test, ParseOr());
      cond->children.push_back(std::move(test));
      cond->children.push_back(std::move(expr));
      if (SkipName("else")) {
        ASSIGN_OR_RETURN(ExprPtr other, ParseExpression(true));
        cond->children.push_back(std::move(other));
      } else {
        cond->children.push_back(nullptr);
      }
      expr = std::move(cond);
    }
    return expr;
  }

  ExprPtr Binary(const std::string& op, ExprPtr lhs, ExprPtr rhs, int line) {
    auto expr = MakeExpr(ExprKind::kBinary, line);
    expr->name = op;
    expr->children.push_back(std::move(lhs));
    expr->children.push_back(std::move(rhs));
    return expr;
  }

  absl::StatusOr<ExprPtr> ParseOr() {
    ASSIGN_OR_RETURN(ExprPtr left, ParseAnd());
    while (IsName("or")) {
      const int line = Cur().line;
      Advance();
      ASSIGN_OR_RETURN(ExprPtr right, ParseAnd());
      left = Binary("or", std::move(left), std::move(right), line);
    }
    return left;
  }

  absl::StatusOr<ExprPtr> ParseAnd() {
    ASSIGN_OR_RETURN(ExprPtr left, ParseNot());
    while (IsName("and")) {
      const int line = Cur().line;
      Advance();
      ASSIGN_OR_RETURN(ExprPtr right, ParseNot());
      left = Binary("and", std::move(left), std::move(right), line);
    }
    return left;
  }

  absl::StatusOr<ExprPtr> ParseNot() {
    if (IsName("not")) {
      const int line = Cur().line;
      Advance();
      Nest nest(&depth_);
      RETURN_IF_ERROR(CheckNesting());
      auto expr = MakeExpr(ExprKind::kNot, line);
      ASSIGN_OR_RETURN(ExprPtr operand, ParseNot());
      expr->children.push_back(std::move(operand));
      return expr;
    }
    return ParseCompare();
  }

  absl::StatusOr<ExprPtr> ParseCompare() {
    const int line = Cur().line;
    ASSIGN_OR_RETURN(ExprPtr first, ParseMath1());
    auto cmp = MakeExpr(ExprKind::kCompare, line);
    cmp->children.push_back(std::move(first));
    while (true) {
      std::string op;
      if (Cur().kind == TokenKind::kOperator &&
          (Cur().text == "==" || Cur().text == "!=" || Cur().text == "<" || Cur().text == ">" ||
           Cur().text == "<=" || Cur().text == ">=")) {
        op = Cur().text;
        Advance();
      } else if (IsName("in")) {
        op = "in";
        Advance();
      } else if (IsName("not") && Peek().kind == TokenKind::kName && Peek().text == "in") {
        op = "notin";
        Advance();
        Advance();
      } else {
        break;
      }
      ASSIGN_OR_RETURN(ExprPtr rhs, ParseMath1());
      cmp->ops.push_back(op);
      cmp->children.push_back(std::move(rhs));
    }
    if (cmp->ops.empty()) return std::move(cmp->children[0]);
    return cmp;
  }

  absl::StatusOr<ExprPtr> ParseMath1() {
    ASSIGN_OR_RETURN(ExprPtr left, ParseConcat());
    while (IsOp("+") || IsOp("-")) {
      const std::string op = Cur().text;
      const int line = Cur().line;
      Advance();
      ASSIGN_OR_RETURN(ExprPtr right, ParseConcat());
      left = Binary(op, std::move(left), std::move(right), line);
    }
    return left;
  }

  absl::StatusOr<ExprPtr> ParseConcat() {
    ASSIGN_OR_RETURN(ExprPtr left, ParseMath2());
    while (IsOp("~")) {
      const int line = Cur().line;
      Advance();
      ASSIGN_OR_RETURN(ExprPtr right, ParseMath2());
      left = Binary("~", std::move(left), std::move(right), line);
    }
    return left;
  }

  absl::StatusOr<ExprPtr> ParseMath2() {
    ASSIGN_OR_RETURN(ExprPtr left, ParsePow());
    while (IsOp("*") || IsOp("/") || IsOp("//") || IsOp("%")) {
      const std::string op = Cur().text;
      const int line = Cur().line;
      Advance();
      ASSIGN_OR_RETURN(ExprPtr right, ParsePow());
      left = Binary(op, std::move(left), std::move(right), line);
    }
    return left;
  }

  absl::StatusOr<ExprPtr> ParsePow() {
    ASSIGN_OR_RETURN(ExprPtr left, ParseUnary(true));
    while (IsOp("**")) {
      const int line = Cur().line;
      Advance();
      ASSIGN_OR_RETURN(ExprPtr right, ParseUnary(true));
      left = Binary("**", std::move(left), std::move(right), line);
    }
    return left;
  }

  absl::StatusOr<ExprPtr> ParseUnary(bool with_filter) {
    Nest nest(&depth_);
    RETURN_IF_ERROR(CheckNesting());
    const int line = Cur().line;
    ExprPtr node;
    if (IsOp("-") || IsOp("+")) {
      node = MakeExpr(IsOp("-") ? ExprKind::kNegate : ExprKind::kPlus, line);
      Advance();
      ASSIGN_OR_RETURN(ExprPtr operand, ParseUnary(false));
      node->children.push_back(std::move(operand));
    } else {
      ASSIGN_OR_RETURN(node, ParsePrimary());
    }
    ASSIGN_OR_RETURN(node, ParsePostfix(std::move(node)));
    if (!with_filter) return node;
    return ParseFilterExpr(std::move(node));
  }

  absl::StatusOr<ExprPtr> ParsePrimary() {
    const Token& token = Cur();
    if (token.kind == TokenKind::kName) {
      Advance();
      if (token.text == "true" || token.text == "True") return Literal(Value(true), token.line);
      if (token.text == "false" || token.text == "False") return Literal(Value(false), token.line);
      if (token.text == "none" || token.text == "None") return Literal(Value(None{}), token.line);
      auto name = MakeExpr(ExprKind::kName, token.line);
      name->name = token.text;
      return name;
    }
    if (token.kind == TokenKind::kString) {
      std::string text;
      const int line = token.line;
      while (Cur().kind == TokenKind::kString) {  // Adjacent literals concatenate.
        text += Cur().text;
        Advance();
      }
      return Literal(Value(std::move(text)), line);
    }
    if (token.kind == TokenKind::kInt) {
      Advance();
      return Literal(Value(token.int_value), token.line);
    }
    if (token.kind == TokenKind::kFloat) {
      Advance();
      return Literal(Value(token.float_value), token.line);
    }
    if (IsOp("(")) {
      Advance();
      if (SkipOp(")")) return MakeExpr(ExprKind::kTuple, token.line);
      ASSIGN_OR_RETURN(ExprPtr first, ParseExpression(true));
      if (SkipOp(")")) return first;
      auto tuple = MakeExpr(ExprKind::kTuple, token.line);
      tuple->children.push_back(std::move(first));
      while (SkipOp(",")) {
        if (IsOp(")")) break;
        ASSIGN_OR_RETURN(ExprPtr item, ParseExpression(true));
        tuple->children.push_back(std::move(item));
      }
      RETURN_IF_ERROR(ExpectOp(")"));
      return tuple;
    }
    if (IsOp("[")) {
      Advance();
      auto list = MakeExpr(ExprKind::kList, token.line);
      while (!IsOp("]")) {
        if (!list->children.empty()) RETURN_IF_ERROR(ExpectOp(","));
        if (IsOp("]")) break;
        ASSIGN_OR_RETURN(ExprPtr item, ParseExpression(true));
        list->children.push_back(std::move(item));
      }
      Advance();
      return list;
    }
    if (IsOp("{")) {
      Advance();
      auto dict = MakeExpr(ExprKind::kDict, token.line);
      while (!IsOp("}")) {
        if (!dict->children.empty()) RETURN_IF_ERROR(ExpectOp(","));
        if (IsOp("}")) break;
        ASSIGN_OR_RETURN(ExprPtr key, ParseExpression(true));
        RETURN_IF_ERROR(ExpectOp(":"));
        ASSIGN_OR_RETURN(ExprPtr value, ParseExpression(true));
        dict->children.push_back(std::move(key));
        dict->children.push_back(std::move(value));
      }
      Advance();
      return dict;
    }
    return Error(token, absl::StrCat("unexpected ", Describe(token)));
  }

  ExprPtr Literal(Value value, int line) {
    auto expr = MakeExpr(ExprKind::kLiteral, line);
    expr->literal = std::move(value);
    return expr;
  }

  absl::StatusOr<ExprPtr> ParsePostfix(ExprPtr node) {
    while (true) {
      const int line = Cur().line;
      if (SkipOp(".")) {
        if (Cur().kind == TokenKind::kInt) {
          auto item = MakeExpr(ExprKind::kGetItem, line);
          item->children.push_back(std::move(node));
          item->children.push_back(Literal(Value(Cur().int_value), line));
          Advance();
          node = std::move(item);
          continue;
        }
        auto attr = MakeExpr(ExprKind::kGetAttr, line);
        ASSIGN_OR_RETURN(attr->name, ExpectName());
        attr->children.push_back(std::move(node));
        node = std::move(attr);
      } else if (IsOp("[")) {
        Advance();
        ASSIGN_OR_RETURN(node, ParseSubscript(std::move(node), line));
      } else if (IsOp("(")) {
        ASSIGN_OR_RETURN(node, ParseCall(std::move(node)));
      } else {
        return node;
      }
    }
  }

  // After `[`: an index or a slice; consumes the `]`.
  absl::StatusOr<ExprPtr> ParseSubscript(ExprPtr node, int line) {
    ExprPtr bounds[3];
    bool is_slice = false;
    for (int i = 0; i < 3; ++i) {
      if (!IsOp(":") && !IsOp("]")) {
        ASSIGN_OR_RETURN(bounds[i], ParseExpression(true));
      }
      if (i < 2 && SkipOp(":")) {
        is_slice = true;
        continue;
      }
      break;
    }
    RETURN_IF_ERROR(ExpectOp("]"));
    auto expr = MakeExpr(is_slice ? ExprKind::kSlice : ExprKind::kGetItem, line);
    expr->children.push_back(std::move(node));
    if (!is_slice) {
      if (bounds[0] == nullptr) return Error(Cur(), "expected an index");
      expr->children.push_back(std::move(bounds[0]));
      return expr;
    }
    for (auto& bound : bounds) expr->children.push_back(std::move(bound));
    return expr;
  }

  // `(args, key=value)` onto `expr`, whose children[0] must already be set, or as a call of
  // `callee` when given.
  absl::Status ParseArgs(Expr* expr) {
    RETURN_IF_ERROR(ExpectOp("("));
    bool first = true;
    while (!IsOp(")")) {
      if (!first) RETURN_IF_ERROR(ExpectOp(","));
      first = false;
      if (IsOp(")")) break;
      if (Cur().kind == TokenKind::kName && Peek().kind == TokenKind::kOperator &&
          Peek().text == "=") {
        std::string key = Cur().text;
        Advance();
        Advance();
        ASSIGN_OR_RETURN(ExprPtr value, ParseExpression(true));
        expr->kwargs.emplace_back(std::move(key), std::move(value));
      } else {
        if (!expr->kwargs.empty()) return Error(Cur(), "positional argument after keyword");
        ASSIGN_OR_RETURN(ExprPtr value, ParseExpression(true));
        expr->children.push_back(std::move(value));
      }
    }
    return ExpectOp(")");
  }

  absl::StatusOr<ExprPtr> ParseCall(ExprPtr callee) {
    auto call = MakeExpr(ExprKind::kCall, Cur().line);
    call->children.push_back(std::move(callee));
    RETURN_IF_ERROR(ParseArgs(call.get()));
    return call;
  }

  absl::StatusOr<ExprPtr> ParseFilterExpr(ExprPtr node) {
    while (true) {
      if (IsOp("|")) {
        ASSIGN_OR_RETURN(node, ParseFilters(std::move(node), /*first_without_pipe=*/false));
      } else if (IsName("is")) {
        ASSIGN_OR_RETURN(node, ParseTest(std::move(node)));
      } else if (IsOp("(")) {
        ASSIGN_OR_RETURN(node, ParseCall(std::move(node)));
      } else {
        return node;
      }
    }
  }

  // `| name(args) | name ...` applied to `node`. `{% filter name %}` omits the first `|`.
  absl::StatusOr<ExprPtr> ParseFilters(ExprPtr node, bool first_without_pipe) {
    bool first = true;
    while ((first && first_without_pipe) || SkipOp("|")) {
      first = false;
      auto filter = MakeExpr(ExprKind::kFilter, Cur().line);
      ASSIGN_OR_RETURN(filter->name, ExpectName());
      filter->children.push_back(std::move(node));
      if (IsOp("(")) RETURN_IF_ERROR(ParseArgs(filter.get()));
      node = std::move(filter);
    }
    return node;
  }

  absl::StatusOr<ExprPtr> ParseTest(ExprPtr node) {
    auto test = MakeExpr(ExprKind::kTest, Cur().line);
    Advance();  // is
    test->negated = SkipName("not");
    ASSIGN_OR_RETURN(test->name, ExpectName());
    test->children.push_back(std::move(node));
    if (IsOp("(")) {
      RETURN_IF_ERROR(ParseArgs(test.get()));
    } else {
      const TokenKind kind = Cur().kind;
      const bool starts_primary = kind == TokenKind::kName || kind == TokenKind::kString ||
                                  kind == TokenKind::kInt || kind == TokenKind::kFloat ||
                                  IsOp("(") || IsOp("[") || IsOp("{");
      if (starts_primary && !IsName("else") && !IsName("or") && !IsName("and")) {
        if (IsName("is")) return Error(Cur(), "you cannot chain multiple tests with is");
        ASSIGN_OR_RETURN(ExprPtr arg, ParsePrimary());
        ASSIGN_OR_RETURN(arg, ParsePostfix(std::move(arg)));
        test->children.push_back(std::move(arg));
      }
    }
    return test;
  }

  std::vector<Token> tokens_;
  size_t pos_ = 0;
  int depth_ = 0;
  int loop_depth_ = 0;
};

}  // namespace

absl::StatusOr<Body> ParseTemplate(std::string_view source) {
  ASSIGN_OR_RETURN(std::vector<Token> tokens, Tokenize(source));
  return Parser(std::move(tokens)).ParseAll();
}

}  // namespace iquest::jinja
